"""Write a file so that readers see all of it or nothing: a temp file, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, then rename the temp file onto ``path``.

    The temp file sits next to ``path`` (same filesystem, so the rename is atomic); two
    processes racing on one path each rename a complete file, and a crash leaves none.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # as open() would make it; mkstemp makes 0600
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
