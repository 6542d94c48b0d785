"""What every command shares: a user's mistake as one sentence (``Error: ...``, exit code
2), a failed sweep job recorded so the sweep goes on.

The Hydra entry points (``train.py``, ``eval.py``, ``python -m tl_experiments.advise``) go
through :func:`guarded`; the commands that need no config file (predict, export, compare)
take ``key=value`` or positional arguments and go through :func:`run_command`, which prints
errors the same way.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig

from tl_experiments.errors import UserError
from tl_experiments.paths import job_dirname, unquote
from tl_experiments.run.outputs import write_json_atomic

__all__ = ["find_images", "guarded", "parse_kv", "positive_int"]
__all__ += ["register_resolvers", "run_command"]


def register_resolvers() -> None:
    """OmegaConf resolvers the configs use (``${tl_dirname:...}``) and the typed config
    schemas (:mod:`tl_experiments.config_schema`); call before Hydra composes."""
    from omegaconf import OmegaConf

    from tl_experiments.config_schema import register_configs

    register_configs()

    resolvers = {"tl_dirname": job_dirname, "tl_optuna_db": optuna_sqlite}
    for name, resolver in (resolvers | {"tl_model_default": _model_default}).items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def _model_default(key: str, arch: str, file_arch: str | None = None, value=None):
    """conf/model's ``${tl_model_default:...}``: the file's name or img_size (``value``) while
    ``model.arch`` is its arch, else that arch's own (timm imported then only: models/size.py)."""
    if arch == file_arch or key == "name":
        return value if arch == file_arch else arch
    from tl_experiments.models.size import own_img_size

    return own_img_size(arch)


def optuna_sqlite(path: str) -> str:
    """``sqlite:///<absolute path>`` for an Optuna study file, its folder and tables created.

    The sweeper opens the study before any job has made the sweep folder, and SQLite cannot
    create a file in a missing folder. The tables are created under a file lock: several
    searches started at once on one new file would otherwise race to create them.
    """
    full = Path(path).resolve()
    full.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{full}"
    with open(f"{full}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            from optuna.storages import RDBStorage

            RDBStorage(url)  # creates the tables once; later opens only check the schema
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return url


def preflight(argv: list[str], config_name: str) -> None:
    """Catch config mistakes before Hydra starts, as one sentence and exit code 2.

    Hydra reports a mistyped key or an unwritable output folder with a traceback; a
    single run's overrides are composed here first (cheap), so the user gets the fix instead.
    Multiruns (``-m``) and Hydra's own flags are left to Hydra.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1" or any(a.startswith("-") for a in argv):
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from tl_experiments.config_schema import wrong_type

    conf = Path(__file__).resolve().parents[2] / "conf"
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=argv, return_hydra_config=True)
            run_dir = Path(str(cfg.hydra.run.dir))
    except (HydraException, OmegaConfBaseException) as e:
        _exit(wrong_type(e) or f"{_first_line(e)}; {_override_fix(str(e), conf, config_name)}")
    except Exception:  # anything else: let Hydra report it in full
        return
    missing = missing_key(cfg)
    if missing:
        _exit(missing_message(missing))
    key = "hydra.run.dir" if any(a.startswith("hydra.run.dir=") for a in argv) else None
    _check_writable(run_dir, key or "paths.log_dir")


# The fix for a mandatory value left unset (``???`` in a config file).
_MISSING_HINTS = {
    "data.root": "data.root=/path/to/images (a folder laid out as root/<class_name>/<images>)",
    "ckpt": "ckpt=<run folder>/checkpoints/best.ckpt",
}


def missing_key(cfg: DictConfig) -> str | None:
    """The first mandatory key (``???``) still unset, Hydra's own left out, as OmegaConf
    finds it (``throw_on_missing``). Not ``OmegaConf.missing_keys``: that one resolves every
    interpolation, and ``${data.root}`` stops it while ``data.root`` is unset."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    try:
        own = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        OmegaConf.to_container(own, resolve=False, throw_on_missing=True)
    except MissingMandatoryValue as e:
        return e.full_key
    return None


def missing_message(key: str) -> str:
    """One sentence for an unset mandatory value and how to set it."""
    return f"{key} is not set; pass {_MISSING_HINTS.get(key, key + '=VALUE')} on the command line."


def _override_fix(message: str, conf: Path, config_name: str) -> str:
    """How to fix an override Hydra could not apply: the group option that has the key,
    when another option of the group has it (``data.root`` needs ``data=image_folder``)."""
    found = re.search(r"override '([\w.]+)'", message)
    group, _, sub = found.group(1).partition(".") if found else ("", "", "")
    options = _options_with_key(conf / group, sub.split(".")[0]) if group and sub else []
    if options:
        return (
            f"{found.group(1)} belongs to {' or '.join(f'{group}={o}' for o in options)}; "
            f"add {group}={options[0]} before {found.group(1)}=..."
        )
    return (
        f"check the spelling against `python {config_name}.py --cfg job`, which prints "
        "every key and its value"
    ) + "."


def _options_with_key(group_dir: Path, key: str) -> list[str]:
    """Config files of a group that set ``key``; those where it is mandatory (``???``) first."""
    found = []
    for f in sorted(group_dir.glob("*.yaml")):
        line = re.search(rf"^{re.escape(key)}:(.*)$", f.read_text(), re.M)
        if line:
            found.append((line.group(1).split("#")[0].strip() != "???", f.stem))
    return [name for _, name in sorted(found)]


def _check_writable(run_dir: Path, key: str = "paths.log_dir") -> None:
    parent = run_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():  # mkdir would fail there whatever the rights
        _exit(
            f"Cannot create the output folder '{run_dir}': '{parent}' is a file; "
            f"set {key} to a folder."
        )
    try:  # the real test: can a folder be made there?
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".tl-write-check-"))
    except OSError:
        _exit(
            f"Cannot create the output folder '{run_dir}' ('{parent}' is not writable); "
            f"set {key} to a writable folder."
        )


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__


def _exit(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def guarded(task: Callable[[DictConfig], dict], cfg: DictConfig) -> dict | None:
    """Run ``task(cfg)``; a failure prints one line and exits non-zero, or, in a multirun,
    is recorded in the job's ``error.json`` so the other jobs of the sweep go on."""
    try:
        missing = missing_key(cfg)
        if missing:
            raise UserError(missing_message(missing))
        return task(cfg)
    except KeyboardInterrupt as e:  # Ctrl-C: one line that says what is kept, no traceback
        message = str(e) or "Interrupted; run the command again (ckpt_path=last resumes)."
        print(f"\nStopped: {message}", file=sys.stderr, flush=True)
        sys.exit(130)  # the shell's code for a SIGINT
    except Exception as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        _record_failure(cfg, e, message)
        print(f"Error: {message}", file=sys.stderr, flush=True)
        if not isinstance(e, UserError):
            print("Set HYDRA_FULL_ERROR=1 for the full traceback.", file=sys.stderr)
        if _multirun():
            return None
        sys.exit(2 if isinstance(e, UserError) else 1)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(cfg: DictConfig, e: BaseException, message: str) -> None:
    try:
        out = Path(cfg.paths.output_dir)
        if out.is_dir():
            write_json_atomic(
                {"status": "failed", "error": message, "type": type(e).__name__}, out / "error.json"
            )
    except Exception:  # the output folder itself may be the problem
        pass


def parse_kv(
    argv: Sequence[str], defaults: Mapping[str, str | None], usage: str, about: str = ""
) -> dict[str, str | None]:
    """Parse ``key=value`` arguments over ``defaults`` (``None`` = optional, no default);
    ``--help`` prints ``usage`` and ``about`` (what each option does).

    Raises:
        UserError: on an argument without ``=`` or an unknown key; the message shows ``usage``.
    """
    args = dict(defaults)
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {usage}" + (f"\n\n{about}" if about else ""))
        raise SystemExit(0)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults:
            raise UserError(f"Unknown argument '{arg}'; usage: {usage}")
        args[key] = unquote(value)  # ckpt='<path>', as eval.py takes it, works here too
    return args


def positive_int(args: Mapping[str, str | None], key: str) -> int:
    """``args[key]`` as a positive int (UserError otherwise)."""
    try:
        value = int(args[key])
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        raise UserError(f"{key}={args[key]} must be a positive integer.")
    return value


def find_images(spec: str) -> list[Path]:
    """Image files named by ``spec``: comma-separated files and folders (searched recursively).

    Raises:
        UserError: if a named path does not exist or no image file is found.
    """
    # Here, not at the top: the Hydra entry points import this module before torch.
    from tl_experiments.data.sources import IMAGE_SUFFIXES, image_files

    files: list[Path] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        path = Path(part)
        if path.is_dir():
            files += image_files(path)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"Image path '{path}' does not exist; pass images=FILE_OR_DIR[,...].")
    if not files:
        raise UserError(
            f"No image files found in '{spec}'; pass images= a folder or files "
            f"ending in {', '.join(sorted(IMAGE_SUFFIXES))}."
        )
    return files


def run_command(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run ``main(argv)``; a :class:`UserError` prints one line and returns exit code 2."""
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr, flush=True)
        return 2
