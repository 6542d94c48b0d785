"""What the ``key=value`` commands (predict, export) share: argument parsing, image discovery
and one-sentence errors with a non-zero exit.

They take ``key=value`` arguments, like ``train.py`` and ``eval.py`` do through Hydra, so
one spelling works everywhere, but need no config file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tl_experiments.data.sources import IMAGE_SUFFIXES, image_files
from tl_experiments.errors import UserError

__all__ = ["find_images", "parse_kv", "positive_int", "run_command"]


def parse_kv(
    argv: Sequence[str], defaults: Mapping[str, str | None], usage: str
) -> dict[str, str | None]:
    """Parse ``key=value`` arguments over ``defaults`` (``None`` = optional, no default).

    Raises:
        UserError: on an argument without ``=`` or an unknown key; the message shows ``usage``.
    """
    args = dict(defaults)
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {usage}")
        raise SystemExit(0)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults:
            raise UserError(f"Unknown argument '{arg}'; usage: {usage}")
        args[key] = value
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
