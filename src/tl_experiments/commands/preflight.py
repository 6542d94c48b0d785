"""Catch a config mistake before Hydra starts: one sentence that names the fix, exit 2
(Hydra itself answers a mistyped key or an unwritable folder with a traceback)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig

__all__ = ["exit_with", "missing_key", "missing_message", "preflight"]

# conf/ of the repository (src/tl_experiments/commands/preflight.py -> the repository root).
CONF = Path(__file__).resolve().parents[3] / "conf"


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

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=argv, return_hydra_config=True)
            run_dir = Path(str(cfg.hydra.run.dir))
    except (HydraException, OmegaConfBaseException) as e:
        exit_with(wrong_type(e) or f"{_first_line(e)}; {_override_fix(str(e), CONF, config_name)}")
    except Exception:  # anything else: let Hydra report it in full
        return
    missing = missing_key(cfg)
    if missing:
        exit_with(missing_message(missing))
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
        exit_with(
            f"Cannot create the output folder '{run_dir}': '{parent}' is a file; "
            f"set {key} to a folder."
        )
    try:  # the real test: can a folder be made there?
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".tl-write-check-"))
    except OSError:
        exit_with(
            f"Cannot create the output folder '{run_dir}' ('{parent}' is not writable); "
            f"set {key} to a writable folder."
        )


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__


def exit_with(message: str) -> None:
    """Print ``Error: message`` and exit with code 2 (a user's mistake)."""
    print(f"Error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
