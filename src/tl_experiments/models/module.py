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
from tl_experiments.models.stages import get_stages
from tl_experiments.strategies import L2SP, Strategy, apply_trainable, param_groups

__all__ = ["TransferModule", "SCHEDULERS"]

SCHEDULERS = ("cosine", "onecycle", "constant")


class TransferModule(pl.LightningModule):
    """Classifier over a timm backbone whose stages train as the strategy says.

    Args:
        backbone: a timm model whose head already has ``len(class_names)`` outputs.
        strategy: which stages train, their learning rates and the BatchNorm policy.
        class_names: label names, index = class id (kept in the checkpoint).
        scheduler: ``cosine`` (per step, to 0), ``onecycle`` or ``constant``.
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(
        self,
        backbone: nn.Module,
        strategy: Strategy,
        class_names: Sequence[str],
        scheduler: str = "cosine",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.strategy = strategy
        self.class_names = list(class_names)
        self.scheduler_name = scheduler
        self.label_smoothing = label_smoothing
        self.stages = get_stages(backbone)
        apply_trainable(self.stages, strategy.trainable)
        # w0 = the weights the backbone starts from (pretrained), as buffers.
        self.l2sp = (
            L2SP(self.stages, strategy.l2sp_alpha, strategy.l2sp_beta)
            if strategy.uses_l2sp
            else None
        )
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
        self.meta: dict = {}  # arch, data config, run config: stored in every checkpoint
        self.channels_last = False  # see set_speed_options
        # True when batches hold cached pre-logits features (see cached_features.py).
        self.features_input = False
        # A schedule that changes the trainable stages later in the run.
        self.unfreezes_later = bool(
            strategy.phases or strategy.unfreeze_every_n_epochs or strategy.unfreeze_milestones
        )

    def set_speed_options(self, channels_last: bool = False, compile: bool = False) -> None:
        """Opt-in speed options, each measured in scripts/bench.py before it became a default.

        ``compile`` compiles the backbone in place (``nn.Module.compile``), so parameter
        names and checkpoints stay the same.
        """
        self.channels_last = channels_last
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if compile:
            self.backbone.compile()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tl_experiments"] = {
            "class_names": self.class_names,
            "strategy": self.strategy.name,
            **self.meta,
        }

    def configure_callbacks(self) -> list[pl.Callback]:
        # The strategy's schedule (which stages train each epoch) travels with the module.
        from tl_experiments.callbacks.unfreeze import StageSchedule

        if any(isinstance(c, StageSchedule) for c in self.trainer.callbacks):
            return []  # test() after fit(): keep the instance (and state) fit used
        return [StageSchedule(self.strategy)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.features_input:  # the rest of timm's forward_head: dropout, classifier
            x = F.dropout(
                x, p=float(getattr(self.backbone, "drop_rate", 0.0) or 0.0), training=self.training
            )
            return self.backbone.get_classifier()(x)
        return self.backbone(x)

    def train(self, mode: bool = True) -> TransferModule:
        """Frozen stages stay in eval mode (fixed BatchNorm statistics) unless ``train_bn``."""
        super().train(mode)
        if mode and not self.strategy.train_bn:
            for stage in self.stages:
                if not stage.trainable:
                    for m in stage.modules:
                        m.eval()
        return self

    def on_train_epoch_start(self) -> None:
        # Lightning (>= 2.2) never calls .train() itself: it keeps whatever mode the modules
        # are in, so the frozen-stage policy is applied here, every epoch.
        self.train()

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]):
        x, y = batch
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self(x)
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing), logits, y

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._step(batch)
        if not torch.isfinite(loss):  # stop at once: later steps would only spread the NaN
            lrs = ", ".join(f"{g['name']}={g['lr']:.2g}" for g in self.optimizers().param_groups)
            raise UserError(
                f"The loss became {loss.item()} at epoch {self.current_epoch}, "
                f"step {self.global_step}; lower the learning rate (strategy.lr, "
                f"now per stage {lrs}) or check the data for bad values."
            )
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        if self.l2sp is not None:  # logged apart, so train/loss stays comparable across runs
            penalty = self.l2sp(self.stages)
            self.log("train/l2sp", penalty, on_step=False, on_epoch=True)
            loss = loss + penalty
        return loss

    def on_train_epoch_end(self) -> None:
        if self.l2sp is not None:
            self.log_dict({f"drift/{k}": v for k, v in self.l2sp.drift(self.stages).items()})

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.val_acc(logits, y)
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

    def configure_optimizers(self):
        groups = param_groups(self.stages, self.strategy)
        optimizer = torch.optim.AdamW(groups, lr=self.strategy.lr)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        if self.scheduler_name == "constant":
            return optimizer
        if self.scheduler_name == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        elif self.scheduler_name == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in groups], total_steps=total
            )
        else:
            raise UserError(
                f"Unknown scheduler '{self.scheduler_name}'; use one of {', '.join(SCHEDULERS)}."
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
