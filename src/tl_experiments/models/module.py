"""The LightningModule: a timm backbone trained under a :class:`Strategy`, stage by stage."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from tl_experiments.errors import UserError
from tl_experiments.models.base_weights import KEY as BASE_KEY
from tl_experiments.models.base_weights import fill_base, strip_base
from tl_experiments.models.schedulers import SchedulerFactory, cosine
from tl_experiments.stages.stage import get_stages
from tl_experiments.strategies import L2SP, Strategy, StrategyPlan, compile_plan
from tl_experiments.strategies.apply import ApplyPlan

__all__ = ["TransferModule"]


class TransferModule(pl.LightningModule):
    """Classifier over a timm backbone whose stages train as the strategy says.

    Args:
        backbone: a timm model whose head already has ``len(class_names)`` outputs.
        strategy: its compiled plan, or a strategy compiled here into ``self.plan``
            (strategies/plan.py): what trains, at which lr, with which BatchNorm policy;
            ``ApplyPlan`` applies it during a fit.
        class_names: label names, index = class id (kept in the checkpoint).
        scheduler: ``(optimizer, total_steps, max_lrs) -> scheduler or None``, stepped per
            optimizer step: one of :mod:`tl_experiments.models.schedulers` (``conf/scheduler/``).
        label_smoothing: cross-entropy label smoothing.
        max_epochs: the fit's length, to compile the plan once; None outside a fit (the
            plan's callback then compiles its own when a fit starts).
        base_rebuildable: the starting weights can be loaded again (``model.weights`` is
            not ``none``): a parameter-efficient run's checkpoints leave its base out.
        meta: what every checkpoint stores besides the weights (arch, data and run config).
        channels_last, fused_optimizer, compile: speed options (``speed.*``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        strategy: Strategy | StrategyPlan,
        class_names: Sequence[str],
        scheduler: SchedulerFactory = cosine,
        label_smoothing: float = 0.0,
        max_epochs: int | None = None,
        *,
        base_rebuildable: bool = False,
        meta: dict | None = None,
        channels_last: bool = False,
        fused_optimizer: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.class_names = list(class_names)
        self.make_scheduler = scheduler
        self.label_smoothing = label_smoothing
        self.stages = get_stages(backbone)
        if isinstance(strategy, StrategyPlan):  # compiled by the run's builder
            self.plan = strategy
        else:
            self.plan = compile_plan(strategy, self.stages, max_epochs, base_rebuildable)
        # w0 = the weights the backbone starts from (pretrained), as buffers.
        alpha = self.plan.strategy.l2sp_alpha
        self.l2sp = L2SP(self.stages, alpha) if alpha > 0 else None
        n = len(self.class_names)
        self.train_acc = MulticlassAccuracy(n, average="micro")
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.test_acc = MulticlassAccuracy(n, average="micro")
        self.test_f1 = MulticlassF1Score(n, average="macro")
        self.test_per_class = nn.ModuleDict(
            {
                "precision": MulticlassPrecision(n, average=None),
                "recall": MulticlassRecall(n, average=None),
                "f1": MulticlassF1Score(n, average=None),
            }
        )
        self.test_confmat = MulticlassConfusionMatrix(n)
        self.meta: dict = dict(meta or {})  # arch, data config, run config: in checkpoints
        # Speed options (docs/speed.md). ``compile`` compiles the backbone in place
        # (``nn.Module.compile``): parameter names and checkpoints stay the same.
        self.channels_last = channels_last
        self.fused_optimizer = fused_optimizer
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if compile:
            self.backbone.compile()

    @property
    def strategy(self) -> Strategy:
        return self.plan.strategy

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tl_experiments"] = {
            "class_names": self.class_names,
            "strategy": self.strategy.name,
            **self.meta,
        }
        if not self.plan.keeps_base:  # parameter-efficient: what trained + the base's digest
            strip_base(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Checkpoints written before ApplyPlan keep its state (the lr scales in force)
        # under the name of the callback it replaced; Lightning restores callbacks after
        # this hook, so a resumed run continues with the same learning rates.
        callbacks = checkpoint.get("callbacks") or {}
        if "StageSchedule" in callbacks and "ApplyPlan" not in callbacks:
            callbacks["ApplyPlan"] = callbacks.pop("StageSchedule")
        base = checkpoint.get("tl_experiments", {}).get(BASE_KEY)
        if base is not None:
            checkpoint["state_dict"] = fill_base(checkpoint["state_dict"], self.state_dict(), base)
        if checkpoint.get("tl_experiments", {}).get("frozen_backbone") is not None:
            raise UserError(
                "This checkpoint holds only the head of a feature-cached run, and this run "
                "does not use the feature cache; resume with that run's settings."
            )

    def configure_callbacks(self) -> list[pl.Callback]:
        # The callback that applies the plan (what trains, modes, lr scales) travels with
        # the module, so a module fits the same under any trainer.
        if any(isinstance(c, ApplyPlan) for c in self.trainer.callbacks):
            return []  # test() after fit(): keep the instance (and state) fit used
        return [ApplyPlan()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]):
        x, y = batch
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self(x)
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing), logits, y

    def _check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):  # stop at once: later steps would only spread the NaN
            lrs = ", ".join(f"{g['name']}={g['lr']:.2g}" for g in self.optimizers().param_groups)
            raise UserError(
                f"The loss became {loss.item()} at epoch {self.current_epoch}, "
                f"step {self.global_step}; lower the learning rate (strategy.lr, "
                f"now per stage {lrs}) or check the data for bad values."
            )

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        loss, logits, y = self._step(batch)
        self._check_finite(loss)
        self.train_acc.update(logits, y)  # logged per epoch: no per-batch value to compute
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        if self.l2sp is not None:
            self.log_dict({f"drift/{k}": v for k, v in self.l2sp.drift(self.stages).items()})

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.val_acc.update(logits, y)  # logged per epoch: no per-batch value to compute
        self.log("val/loss", loss, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        for metric in (
            self.test_acc,
            self.test_f1,
            self.test_confmat,
            *self.test_per_class.values(),
        ):
            metric.update(logits, y)
        self.log("test/loss", loss, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.log("test/acc", self.test_acc.compute())
        self.log("test/f1_macro", self.test_f1.compute())

    def test_results(self) -> dict:
        """Per-class precision/recall/F1/support and the confusion matrix of the last test."""
        confmat = self.test_confmat.compute().cpu()
        per_class = {k: m.compute().cpu().tolist() for k, m in self.test_per_class.items()}
        per_class["support"] = confmat.sum(dim=1).tolist()
        return {"per_class": per_class, "confusion_matrix": confmat.tolist()}

    def _optimizer_groups(self) -> list[dict]:
        """One AdamW parameter group per stage, at the plan's lr for that stage."""
        return self.plan.param_groups(self.stages)

    def _total_steps(self) -> int:
        """Optimizer steps in the whole fit: the schedules' length."""
        return max(int(self.trainer.estimated_stepping_batches), 1)

    def configure_optimizers(self):
        groups = self._optimizer_groups()
        optimizer = torch.optim.AdamW(
            groups, lr=self.strategy.lr, fused=self.fused_optimizer or None
        )
        if self.l2sp is not None:
            self.l2sp.attach(optimizer)
        sched = self.make_scheduler(optimizer, self._total_steps(), [g["lr"] for g in groups])
        if sched is None:  # a constant lr
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
