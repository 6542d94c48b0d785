"""The small argument parsers of the commands that need no config file (predict, export):
``key=value`` arguments, a positive count, a list of image files and folders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tl_experiments.errors import UserError
from tl_experiments.paths import unquote

__all__ = ["find_images", "parse_kv", "positive_int"]


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
    # Here, not at the top: --help answers before torch is imported.
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
