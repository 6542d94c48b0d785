"""Pause a fit at an epoch so that it can be resumed exactly (the tuned comparison's rungs)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

__all__ = ["RandomState", "StopAtEpoch"]


class StopAtEpoch(Checkpoint):
    """Save a full checkpoint at the end of epoch ``epochs - 1`` and stop the fit there.

    A ``Checkpoint`` subclass so that Lightning runs it after ``ModelCheckpoint`` (it moves
    checkpoint callbacks last, in their order): the saved state then includes this epoch's
    best-checkpoint bookkeeping, and a resumed fit keeps the true best epoch.

    A new ``Trainer`` with the same ``max_epochs`` resumes it with ``fit(ckpt_path=path)``:
    optimizer, lr schedule (built for ``max_epochs``, not for this stop), epoch history and
    best checkpoint carry on as if the fit had not stopped. Add it after ``EpochHistory``,
    so that the checkpoint holds this epoch's row.
    """

    def __init__(self, epochs: int, path: Path) -> None:
        self.epochs, self.path = epochs, Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


class RandomState(pl.Callback):
    """Keeps the global random states (torch, numpy, Python) in every checkpoint and puts
    them back on resume, so that dropout, drop-path and augmentation after a resume draw what
    the uninterrupted fit would have drawn (Lightning restores the model, optimizer and loops,
    not these)."""

    def state_dict(self) -> dict:
        return {
            "torch": torch.get_rng_state(),
            # Plain lists and numbers: resume_path loads checkpoints with weights_only=True.
            "numpy": [
                x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()
            ],
            "python": _lists(random.getstate()),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, *rest = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))


def _lists(state: tuple) -> list:
    return [list(x) if isinstance(x, tuple) else x for x in state]
