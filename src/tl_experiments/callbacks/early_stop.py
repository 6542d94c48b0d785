"""Stop a run that has stopped learning: Lightning's EarlyStopping on validation accuracy.

Off by default (``trainer.early_stopping_patience: null``); docs/results.md has what it
saves on the main comparison and how far each strategy's accuracy moves.
"""

from __future__ import annotations

from pytorch_lightning.callbacks import EarlyStopping

from tl_experiments.errors import UserError
from tl_experiments.strategies import StrategyPlan

__all__ = ["early_stopping"]


def early_stopping(patience: int, plan: StrategyPlan) -> tuple[EarlyStopping, int]:
    """EarlyStopping on ``val/acc`` and the ``min_epochs`` the trainer must keep, for a
    fit of the module whose strategy plan (compiled for the fit's epochs) is ``plan``.

    A schedule that unfreezes stages late (gradual unfreezing, LP-FT) must not be stopped
    before its last phase has had ``patience`` epochs of its own: Lightning lets no signal
    to stop end a fit before the trainer's ``min_epochs``, so that is set past the last
    phase's start (Lightning's EarlyStopping has no start epoch of its own).
    """
    if patience < 1:
        raise UserError(f"trainer.early_stopping_patience={patience} must be >= 1 (or null).")
    stopper = EarlyStopping(monitor="val/acc", mode="max", patience=patience)
    return stopper, min(plan.max_epochs, plan.last_start + patience + 1)
