"""Per-epoch history (losses, accuracies, cumulative seconds) for ``metrics.json``."""

from __future__ import annotations

import time

import pytorch_lightning as pl

__all__ = ["EpochHistory"]

_KEYS = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
}


class EpochHistory(pl.Callback):
    """Collects one row per training epoch; ``seconds`` is cumulative training wall time,
    ``trainable_stages`` how many stages trained in the epoch."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.seconds = 0.0
        self._start: float | None = None
        # Wall time of fit up to the checkpoint this run resumed from (0 for a fresh run).
        self.resumed_seconds = 0.0
        self._fit_start: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        row.update({k: round(float(m[v]), 6) for k, v in _KEYS.items() if v in m})
        row["seconds"] = round(self.seconds, 3)
        stages = getattr(pl_module, "stages", None)
        if stages is not None:  # the report finds unfreezings (and what they cost) by it
            row["trainable_stages"] = sum(s.trainable for s in stages)
        self.rows.append(row)

    def state_dict(self) -> dict:
        now = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return {
            "rows": self.rows,
            "seconds": self.seconds,
            "fit_seconds": self.resumed_seconds + now,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows, self.seconds = list(state_dict["rows"]), float(state_dict["seconds"])
        # Older checkpoints have no fit_seconds: their epochs' training time is the best guess.
        self.resumed_seconds = float(state_dict.get("fit_seconds", self.seconds))
