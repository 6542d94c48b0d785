"""What a run prints: third-party noise left out, progress for the whole run, a closing summary.

Only messages that say nothing about this run are dropped, each for a stated reason; every
warning about the user's data, config or results still shows.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

__all__ = ["RunProgress", "closing_summary", "quiet_third_party"]


# Lightning's lines that say nothing about this run: product adverts (litlogger, litmodels);
# "GPU available: False, used: False" and the TPU line on every run (Lightning itself warns
# "GPU available but not used", the one case that needs the user); the notice that it loads
# the train loader to count steps.
_NOISE = ("💡 Tip", "GPU available: ", "TPU available: ", "HPU available: ", "Loading `train_")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE)


def quiet_third_party() -> None:
    """Filter the messages of Lightning, torch and PIL that a user of this project can do
    nothing about; called by every command (train, eval, advise) in every process that runs
    a job, so the workers of a parallel sweep are quiet too."""
    from lightning_fabric.utilities.warnings import PossibleUserWarning
    from PIL import Image

    # Frozen stages are put in eval mode on purpose (their BatchNorm statistics stay fixed,
    # strategy.train_bn); the model summary says which stages are frozen.
    warnings.filterwarnings(
        "ignore", r"Found \d+ module\(s\) in eval mode", category=PossibleUserWarning
    )
    # Lightning 2.6's own call into torch's pytree API (deprecated in torch 2.14); nothing
    # in this project or the user's config causes it.
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    # A photo over 89 Mpx: the user's own image, decoded on purpose (and then resized).
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())


class RunProgress(RichProgressBar):
    """Lightning's progress bar plus ``run_left``: the time left for the whole fit, from
    the pace so far (validation included), next to the epoch's own estimate."""

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._first_epoch = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._start, self._first_epoch = time.perf_counter(), trainer.current_epoch

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        left = self.seconds_left(trainer)
        if left is not None:
            metrics["run_left"] = time.strftime("%H:%M:%S", time.gmtime(left))
        return metrics

    def seconds_left(self, trainer: pl.Trainer) -> float | None:
        """Seconds until fit ends at the pace so far; None before the first batch."""
        per_epoch = trainer.num_training_batches
        epochs = (trainer.max_epochs or 0) - self._first_epoch
        if self._start is None or not per_epoch or per_epoch == float("inf") or epochs <= 0:
            return None
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        done = (trainer.current_epoch - self._first_epoch + min(batch / per_epoch, 1.0)) / epochs
        if done <= 0:
            return None
        elapsed = time.perf_counter() - self._start
        return max(elapsed / done - elapsed, 0.0)


def closing_summary(
    metrics: dict,
    out: str,
    seconds: float,
    resumed: float = 0.0,
    outputs: Sequence[str] = ("tb/",),
) -> str:
    """The lines a run ends with: where its folder is, what it measured, how long it took
    (``seconds`` in this process, ``resumed`` of training before a resume), and where each
    logger's record is (``outputs``: folders inside the run folder end in ``/``)."""

    def pct(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{100 * value:.1f}%"

    analysis = metrics.get("analysis_seconds")
    train = metrics.get("train_seconds", 0)
    if resumed > 0:  # train_seconds counts the training before the resume too
        time_line = (
            f"Time: {seconds:.0f} s since the resume, {train:.0f} s training in all "
            f"({resumed:.0f} s of it before the resume)"
        )
    else:
        time_line = f"Time: {seconds:.0f} s in all, {train:.0f} s training"
    here = ["metrics.json", "test_report.csv", *(o for o in outputs if o.endswith("/"))]
    elsewhere = [o for o in outputs if not o.endswith("/")]
    return "\n".join(
        [
            f"Run folder: {out}",
            f"Best validation accuracy {pct('best_val_acc')}, test accuracy {pct('test_acc')} "
            f"(macro F1 {pct('test_f1_macro')}) on {metrics.get('test_size')} test images",
            time_line
            + (f", {analysis:.0f} s analysis" if analysis is not None else "")
            + f"; {', '.join(here[:-1])} and {here[-1]} are in the run folder"
            + "".join(f"; {o}" for o in elsewhere)
            + ".",
        ]
    )
