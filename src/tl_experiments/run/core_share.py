"""Parallel sweep jobs on one CPU machine split its cores among the jobs running *now*.

With Hydra's joblib launcher each job starts with ``cores // n_jobs`` torch threads, so two
jobs on 2 cores do not fight over them. But a sweep's jobs rarely end together: when one
job finishes and no job is left to take its worker, the other keeps a single thread and
half the machine idles until the end (with 4 jobs of which 3 are long, a third of the
sweep). Neither Hydra nor Lightning rebalances threads, so this callback does: a running
job holds an ``flock`` on a slot file, and at every epoch start it counts the held slots
and sets ``torch.set_num_threads(cores // running)``. The OS drops a killed job's lock, so
a crash never leaves a phantom job behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

import pytorch_lightning as pl
import torch

__all__ = ["CoreShare", "running_jobs"]

log = logging.getLogger(__name__)

_MAX_SLOTS = 256


def running_jobs(lock_dir: Path) -> int:
    """How many jobs hold a slot in ``lock_dir`` (this process's own slot included)."""
    held = 0
    for path in lock_dir.glob("job*.lock"):
        with open(path, "a") as f:
            try:  # shared: two jobs probing a free slot at once do not see each other
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                held += 1
            else:
                fcntl.flock(f, fcntl.LOCK_UN)
    return held


class CoreShare(pl.Callback):
    """Give this job ``cores // running jobs`` torch threads, re-checked every epoch."""

    def __init__(self, lock_dir: str | Path, cores: int | None = None) -> None:
        self.lock_dir = Path(lock_dir)
        self.cores = cores or os.cpu_count() or 1
        self._slot: IO | None = None
        self._fewer_seen = False

    def claim(self) -> None:
        """Count this job as running (call it as the job starts, before loading data)."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        for i in range(_MAX_SLOTS):
            f = open(self.lock_dir / f"job{i}.lock", "a")  # noqa: SIM115 (held until release)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            self._slot = f
            return

    def release(self) -> None:
        if self._slot is not None:
            # Unlock first: a forked DataLoader worker may still hold the file open.
            fcntl.flock(self._slot, fcntl.LOCK_UN)
            self._slot.close()
            self._slot = None

    def rebalance(self) -> int:
        """Set and return this job's thread count for the jobs running now.

        Fewer threads take effect at once; more only when the lower job count is seen at
        two checks in a row, so a job does not grab the cores in the second it takes a
        sweep's next job to start and claim its slot.
        """
        threads = max(1, self.cores // max(1, running_jobs(self.lock_dir)))
        current = torch.get_num_threads()
        if threads > current and not self._fewer_seen:
            self._fewer_seen = True
            return current
        self._fewer_seen = False
        if threads != current:
            log.info("core share: %d torch threads (%d cores).", threads, self.cores)
            torch.set_num_threads(threads)
        return threads

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rebalance()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rebalance()
