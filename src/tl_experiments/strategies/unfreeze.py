"""Apply a strategy's schedule of phases: which stages train each epoch, at what lr scale.

One callback for every strategy (a static one is a single phase), so the code never
branches on a strategy's name. The decision depends only on the epoch number, which is the
same on every DDP rank; the callback's state (the lr scales in force) is in the
checkpoint, so a resumed run continues in the same phase with the same learning rates.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
import torch.nn as nn
from pytorch_lightning.callbacks import BaseFinetuning
from pytorch_lightning.utilities import rank_zero_info
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from tl_experiments.errors import UserError
from tl_experiments.run.loggers import log_text
from tl_experiments.stages.stage import batch_norms
from tl_experiments.strategies.plan import compile_plan, set_trainable, unreached_note
from tl_experiments.strategies.schedule import (
    Phase,
    phase_at,
    rescale_lrs,
    stage_scales,
)
from tl_experiments.strategies.strategy import Strategy

__all__ = ["StageSchedule", "reestimate_bn"]

log = logging.getLogger(__name__)


class StageSchedule(BaseFinetuning):
    """Freeze and unfreeze a :class:`TransferModule`'s stages as its strategy's phases say.

    Logs, each epoch, ``train/trainable_stages`` (how many) and ``trainable/<stage>`` (0/1);
    an unfreezing prints one line and adds it to TensorBoard's text tab (``schedule``).
    """

    def __init__(self, strategy: Strategy) -> None:
        super().__init__()
        self.strategy = strategy
        self.phases: list[Phase] = []
        self.scales: list[float] | None = None  # scale_g in force (schedule.py's module doc)
        self._trainable: frozenset[int] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        plan, epochs = pl_module.plan, trainer.max_epochs or 1
        if plan.max_epochs != epochs:  # a module built outside train.py's run
            plan = pl_module.plan = compile_plan(self.strategy, pl_module.stages, epochs)
        self.phases = list(plan.phases)
        if stage == "fit":  # test/validate keep the module as training left it
            note = unreached_note(plan, pl_module.stages)  # lp_ft in 1 epoch: a probe only
            if note and trainer.is_global_zero:
                log.warning(note)
            super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        # Runs before DDP wraps the model, and DDP only ever synchronises parameters that
        # require grad when it wraps (Lightning issue 20340): so every stage that trains in
        # some phase requires grad now; finetune_function sets the exact phase per epoch.
        set_trainable(pl_module.stages, pl_module.plan.ever_trained, self.strategy.kinds)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        model = trainer.strategy.model
        if (
            pl_module.plan.changes
            and isinstance(model, DistributedDataParallel)
            and not (model.find_unused_parameters)
        ):
            raise UserError(
                f"Strategy '{self.strategy.name}' changes which stages train during "
                "the run; under DDP that needs trainer.strategy="
                "ddp_find_unused_parameters_true (or ddp_spawn_find_unused_"
                "parameters_true), so that frozen stages are not waited for."
            )

    def _store(
        self,
        pl_module: pl.LightningModule,
        opt_idx: int,
        num_param_groups: int,
        current_param_groups: list[dict],
    ) -> None:
        # Lightning's BaseFinetuning._store maps every parameter to its name at each epoch
        # start, then uses the map only on the first call or when the epoch added param
        # groups. These schedules never add groups (one per stage from configure_optimizers;
        # unfreezing rescales their lrs): the calls that would store nothing are skipped, as
        # they cost a share of an epoch of cached features (docs/speed.md).
        if opt_idx in self._internal_optimizer_metadata and num_param_groups == len(
            current_param_groups
        ):
            return
        super()._store(pl_module, opt_idx, num_param_groups, current_param_groups)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A run resumed mid-epoch skips on_train_epoch_start: apply the phase here too (the
        # second application in the same epoch changes nothing).
        for optimizer in trainer.optimizers:
            self._apply(pl_module, trainer.current_epoch, optimizer)

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer
    ) -> None:
        trainable = self._apply(pl_module, epoch, optimizer)
        self._announce(pl_module, epoch, trainable)
        if self.strategy.trainable_bn == "reestimate":
            self._reestimate_new_stages(pl_module, epoch)

    def _reestimate_new_stages(self, pl_module: pl.LightningModule, epoch: int) -> None:
        """Stages that start training this epoch get BatchNorm statistics of the target
        data (decided by the phases alone, so a resumed run re-estimates exactly when the
        uninterrupted one did)."""
        phase = phase_at(self.phases, epoch)
        if phase.start != epoch:
            return
        before = phase_at(self.phases, epoch - 1).trainable if epoch > 0 else frozenset()
        new = [s for s in pl_module.stages if s.index in phase.trainable - before]
        bns = [bn for s in new for bn in batch_norms(s)]
        if bns:
            n = reestimate_bn(pl_module, bns, pl_module.trainer.train_dataloader)
            rank_zero_info(
                f"[schedule] epoch {epoch}: BatchNorm statistics of "
                f"{', '.join(s.name for s in new)} re-estimated on {n} training images"
            )

    def _apply(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer
    ) -> frozenset[int]:
        """Set requires_grad, train/eval modes and the lr scales of ``epoch``'s phase."""
        phase = phase_at(self.phases, epoch)
        set_trainable(pl_module.stages, phase.trainable, self.strategy.kinds)
        pl_module.train()  # frozen stages to eval mode (BatchNorm), unless train_bn
        scales = stage_scales(
            self.phases, epoch, len(pl_module.stages), self.strategy.unfreeze_warmup_epochs
        )
        applied = self.scales or [1.0] * len(scales)  # configure_optimizers sets scale 1
        schedulers = [
            c.scheduler
            for c in pl_module.trainer.lr_scheduler_configs
            if c.scheduler.optimizer is optimizer
        ]
        ratios = [new / old for new, old in zip(scales, applied, strict=True)]
        rescale_lrs(optimizer, schedulers, ratios)
        self.scales = scales
        return phase.trainable

    def _announce(
        self, pl_module: pl.LightningModule, epoch: int, trainable: frozenset[int]
    ) -> None:
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
        for logger in pl_module.loggers:  # straight to the loggers: self.log's bookkeeping
            # per value is a share of an epoch of cached features (docs/speed.md)
            logger.log_metrics(metrics, step=pl_module.global_step)

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "scales": self.scales,
            "trainable": sorted(self._trainable) if self._trainable is not None else None,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.scales = state_dict.get("scales")
        trainable = state_dict.get("trainable")
        self._trainable = None if trainable is None else frozenset(trainable)


@torch.no_grad()
def reestimate_bn(
    pl_module: pl.LightningModule, bns: list[nn.modules.batchnorm._BatchNorm], loader
) -> int:
    """Replace the running statistics of ``bns`` by their exact average over one pass of
    ``loader`` (momentum None = cumulative average), the rest of the model in eval mode;
    ``bns`` are left in eval mode (the policy keeps them fixed from here). Returns the
    number of images seen."""
    was_training = pl_module.training
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
    pl_module.train(was_training)  # the module's policy puts these BatchNorms in eval mode
    return seen
