"""Stopping and resuming a run: Ctrl-C says how to resume, and ``ckpt_path`` resumes."""

from __future__ import annotations

import os
import re
import signal
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch

from tl_experiments.errors import UserError

__all__ = ["resume_hint", "resume_path", "stopped_by_ctrl_c"]


@contextmanager
def stopped_by_ctrl_c(
    trainer: pl.Trainer, out: Path, where: str, overrides: Sequence[str] = ()
) -> Iterator[None]:
    """Lightning answers Ctrl-C with its own shutdown and ``sys.exit(1)``; say instead how
    to resume (``KeyboardInterrupt`` with that sentence, which ``commands/guard.py`` prints;
    ``overrides``: the job's own, repeated in the command)."""
    try:
        yield
    except SystemExit:
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignored it
        raise KeyboardInterrupt(f"Interrupted {where}; {resume_hint(out, overrides)}") from None


def resume_hint(out: Path, overrides: Sequence[str] = ()) -> str:
    """How to continue this run from its last checkpoint, as a command (``overrides``: the
    job's own command-line overrides)."""
    if not (out / "checkpoints" / "last.ckpt").exists():
        return "no epoch finished yet, so run the same command again to start over."
    skip = ("hydra.run.dir=", "ckpt_path=")
    kept = [o for o in overrides if not o.startswith(skip)]
    args = " ".join([*kept, f"hydra.run.dir={out}", "ckpt_path=last"])
    return f"resume with: python train.py {args}"


def resume_path(ckpt_path: str | None, out: Path) -> str | None:
    """The checkpoint to resume from (``last`` = this run folder's last.ckpt), checked to be
    a plain-data file before Lightning unpickles it."""
    if not ckpt_path:
        return None
    path = out / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        raise UserError(
            f"No checkpoint at '{path}' to resume from; pass the killed run's "
            "folder as hydra.run.dir=... with ckpt_path=last, or a .ckpt path."
        )
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(
            f"Refused to resume from '{path}': it is not a plain checkpoint "
            f"({type(e).__name__}); use a checkpoint written by train.py."
        ) from None
    # Resuming into the folder that holds the checkpoint: Lightning's warning that the
    # checkpoint folder is not empty is expected, not news.
    folder = re.escape(os.path.realpath(out / "checkpoints"))  # as Lightning prints it
    warnings.filterwarnings("ignore", f"Checkpoint directory {folder} exists and is not empty")
    return str(path)
