"""The one callback that applies a :class:`StrategyPlan` during a fit, through Lightning's
public hooks: which parameters require grad, which modules are in train or eval mode (the
BatchNorm policy), the lr scale of every stage's group, and BatchNorm re-estimation.

One callback for every strategy (a static one is a single phase), so the code never
branches on a strategy's name. The decision depends only on the epoch number, which is the
same on every DDP rank; the callback's state (the lr scales in force) is in the
checkpoint, so a resumed run continues in the same phase with the same learning rates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn as nn
from pytorch_lightning.utilities import rank_zero_info
from torch.nn.parallel import DistributedDataParallel

from tl_experiments.errors import UserError
from tl_experiments.run.loggers import log_text
from tl_experiments.stages import Stage
from tl_experiments.stages.stage import batch_norms
from tl_experiments.strategies.plan import StrategyPlan, compile_plan, unreached_note
from tl_experiments.strategies.schedule import rescale_lrs

__all__ = ["ApplyPlan", "apply_phase", "reestimate_bn", "set_modes", "set_trainable"]

log = logging.getLogger(__name__)


def set_trainable(stages: Sequence[Stage], plan: StrategyPlan, trainable: Iterable[int]) -> None:
    """Set ``requires_grad`` of every parameter as ``plan`` says for these ``trainable``
    stages (:meth:`StrategyPlan.trains`): the one place that sets it during a run."""
    chosen = frozenset(trainable)
    for s in stages:
        for p, on in zip(s.params, plan.trains(s, chosen), strict=True):
            p.requires_grad_(on)


def set_modes(
    model: nn.Module, stages: Sequence[Stage], plan: StrategyPlan, trainable: Iterable[int]
) -> None:
    """Put ``model`` in train mode, then the BatchNorm layers whose statistics the plan
    keeps fixed in eval mode: every module of a frozen stage (unless ``train_bn``), and the
    BatchNorm layers of training stages under ``trainable_bn`` ``frozen``/``reestimate``
    (their weight and bias still train)."""
    model.train()
    chosen = frozenset(trainable)
    for stage in stages:
        # A stage trains when a parameter of it does (with param_kinds, a stage of the
        # phase whose parameters are all of other kinds stays frozen, modes included).
        trains = any(plan.trains(stage, chosen))
        if not plan.bn_frozen(trains):
            continue
        if not trains:
            for m in stage.modules:
                m.eval()
        else:
            for bn in batch_norms(stage):  # its own flag only: timm's BatchNormAct2d holds
                bn.training = False  # its activation and drop (parameter-free) as children


def apply_phase(module: nn.Module, epoch: int = 0) -> frozenset[int]:
    """What ``ApplyPlan`` sets when ``epoch`` starts (``requires_grad`` and modes, not the
    lr scales), for a module trained or checked outside a fit (benchmarks' plain loops,
    scripts/check_zoo.py); returns the stages that train."""
    trainable = module.plan.trainable_at(epoch)
    set_trainable(module.stages, module.plan, trainable)
    set_modes(module, module.stages, module.plan, trainable)
    return trainable


class ApplyPlan(pl.Callback):
    """Apply a module's :class:`StrategyPlan` (``pl_module.plan``, ``pl_module.stages``)
    epoch by epoch.

    Logs, each epoch after applying it, ``train/trainable_stages`` (how many),
    ``trainable/<stage>`` (0/1) and each stage's lr as ``lr-<optimizer>/<stage>`` (the
    names of Lightning's ``LearningRateMonitor``, at the step of the epoch's start, on the
    image path and on cached features alike); an unfreezing prints one line and adds it to
    TensorBoard's text tab (``schedule``).
    """

    def __init__(self) -> None:
        self.plan: StrategyPlan | None = None
        self.scales: list[float] | None = None  # scale_g in force (schedule.py's module doc)
        self._trainable: frozenset[int] | None = None
        self._modes_for: frozenset[int] | None = None  # the stages the modes were set for
        self._started: int | None = None  # the last epoch whose start was done (checkpointed)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        plan, epochs = pl_module.plan, trainer.max_epochs or 1
        if plan.max_epochs != epochs:  # a module built outside a run: the phases of this
            # fit; the module's own plan keeps what the optimizer and checkpoints read
            plan = compile_plan(plan.strategy, pl_module.stages, epochs)
        self.plan = plan
        if stage != "fit":  # test/validate keep the module as training left it
            return
        note = unreached_note(plan, pl_module.stages)  # lp_ft in 1 epoch: a probe only
        if note and trainer.is_global_zero:
            log.warning(note)
        # Before DDP wraps the model: DDP only ever synchronises parameters that require
        # grad when it wraps (Lightning issue 20340), so every stage that trains in some
        # phase requires grad now; each epoch start then sets the exact phase.
        set_trainable(pl_module.stages, plan, plan.ever_trained)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = trainer.strategy.model
        if (
            self.plan.changes
            and isinstance(model, DistributedDataParallel)
            and not model.find_unused_parameters
        ):
            raise UserError(
                f"Strategy '{self.plan.strategy.name}' changes which stages train during "
                "the run; under DDP that needs trainer.strategy="
                "ddp_find_unused_parameters_true (or ddp_spawn_find_unused_"
                "parameters_true), so that frozen stages are not waited for."
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The modes are set anew at every fit's start: a test or a user may have changed
        # them since. A resumed fit: Lightning (2.6) skips on_train_epoch_start for the
        # epoch it resumes in after some restarts (fit_loop.on_advance_start), so that
        # epoch's start (phase, line, lrs, a re-estimation) is done here when the
        # checkpoint says it was not done yet, and only once (``_started``); resumed
        # mid-epoch, only the phase is applied again.
        self._modes_for = None
        epoch = trainer.current_epoch
        if trainer.ckpt_path is not None and self._started != epoch:
            self._epoch_start(trainer, pl_module, epoch)
        else:
            self._apply(trainer, pl_module, epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._started != trainer.current_epoch:
            self._epoch_start(trainer, pl_module, trainer.current_epoch)

    def _epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int):
        """The phase of ``epoch``, its line and lrs, and the re-estimation it starts with."""
        self._started = epoch
        trainable = self._apply(trainer, pl_module, epoch)
        self._announce(pl_module, epoch, trainable)
        new = [s for s in pl_module.stages if s.index in self.plan.reestimates_at(epoch)]
        bns = [bn for s in new for bn in batch_norms(s)]
        if bns:  # decided by the phases alone: a resumed run re-estimates when the first did
            n = reestimate_bn(pl_module, bns, trainer.train_dataloader)
            set_modes(pl_module, pl_module.stages, self.plan, trainable)
            rank_zero_info(
                f"[schedule] epoch {epoch}: BatchNorm statistics of "
                f"{', '.join(s.name for s in new)} re-estimated on {n} training images"
            )

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int):
        """requires_grad, train/eval modes and the lr scales of ``epoch``'s phase."""
        plan, stages = self.plan, pl_module.stages
        trainable = plan.trainable_at(epoch)
        set_trainable(stages, plan, trainable)
        # Lightning (>= 2.2) never calls .train() itself: it keeps whatever mode the
        # modules are in (and restores it after validation), so the modes are set here,
        # when the fit starts and when the stages that train change (per epoch, a share of
        # an epoch of cached features: docs/speed.md).
        if trainable != self._modes_for:
            set_modes(pl_module, stages, plan, trainable)
            self._modes_for = trainable
        scales = plan.scales_at(epoch)
        applied = self.scales or [1.0] * len(scales)  # configure_optimizers sets scale 1
        ratios = [new / old for new, old in zip(scales, applied, strict=True)]
        for optimizer in trainer.optimizers:
            schedulers = [
                c.scheduler
                for c in trainer.lr_scheduler_configs
                if c.scheduler.optimizer is optimizer
            ]
            rescale_lrs(optimizer, schedulers, ratios)
        self.scales = scales
        return trainable

    def _announce(self, pl_module: pl.LightningModule, epoch: int, trainable: frozenset[int]):
        stages = pl_module.stages
        names = ", ".join(s.name for s in stages if s.index in trainable) or "none"
        if self._trainable is not None and trainable != self._trainable:
            new = ", ".join(s.name for s in stages if s.index in trainable - self._trainable)
            gone = ", ".join(s.name for s in stages if s.index in self._trainable - trainable)
            line = (
                f"epoch {epoch}: "
                + (f"unfreeze {new}" if new else "")
                + ("; " if new and gone else "")
                + (f"freeze {gone}" if gone else "")
                + f" -> training {names}"
            )
            rank_zero_info(f"[schedule] {line}")
            log_text(pl_module.loggers, "schedule", line, pl_module.global_step)
        if self._trainable is None:  # the first epoch; later, a line only when it changes
            log.info("epoch %d: training %s", epoch, names)
        self._trainable = trainable
        metrics = {f"trainable/{s.name}": float(s.index in trainable) for s in stages}
        metrics["train/trainable_stages"] = float(len(trainable))
        for optimizer in pl_module.trainer.optimizers:
            kind = type(optimizer).__name__
            metrics |= {f"lr-{kind}/{g['name']}": g["lr"] for g in optimizer.param_groups}
        for logger in pl_module.loggers:  # straight to the loggers: self.log's bookkeeping
            # per value is a share of an epoch of cached features (docs/speed.md)
            logger.log_metrics(metrics, step=pl_module.global_step)

    def state_dict(self) -> dict:
        return {
            "started": self._started,
            "scales": self.scales,
            "trainable": sorted(self._trainable) if self._trainable is not None else None,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.scales = state_dict.get("scales")
        self._started = state_dict.get("started")
        trainable = state_dict.get("trainable")
        self._trainable = None if trainable is None else frozenset(trainable)


@torch.no_grad()
def reestimate_bn(
    pl_module: pl.LightningModule, bns: list[nn.modules.batchnorm._BatchNorm], loader
) -> int:
    """Replace the running statistics of ``bns`` by their exact average over one pass of
    ``loader`` (momentum None = cumulative average), the rest of the model in eval mode.
    Leaves the whole model in eval mode: the caller sets the plan's modes again. Returns
    the number of images seen."""
    pl_module.eval()
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    seen = 0
    for x, _ in loader:
        x = x.to(pl_module.device)
        if getattr(pl_module, "channels_last", False) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        pl_module(x)
        seen += len(x)
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    pl_module.eval()
    return seen
