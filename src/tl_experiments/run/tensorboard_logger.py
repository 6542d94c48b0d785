"""Lightning's TensorBoard logger, flushing its event file at most once a second."""

from __future__ import annotations

import time

from pytorch_lightning.loggers import TensorBoardLogger

__all__ = ["RunLogger"]


class RunLogger(TensorBoardLogger):
    """``TensorBoardLogger`` whose ``save()`` (a flush of the event file, and a check for
    ``hparams.yaml``) runs at most every ``flush_every`` seconds, and always at the end.

    Lightning calls ``save()`` after every ``log_metrics``: several flushes an epoch. That
    is nothing beside an epoch of images, but a share of an epoch on cached features
    (docs/speed.md); TensorBoard itself re-reads event files every few seconds.
    """

    def __init__(self, *args, flush_every: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.flush_every = flush_every
        self._last_save = float("-inf")

    def save(self) -> None:
        now = time.monotonic()
        if now - self._last_save >= self.flush_every:
            self._last_save = now
            super().save()

    def finalize(self, status: str) -> None:
        self._last_save = float("-inf")  # the closing save always writes
        super().finalize(status)
