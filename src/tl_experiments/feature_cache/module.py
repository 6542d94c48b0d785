"""The module of a feature-cached run: a :class:`TransferModule` that trains only its head,
on cached features (``plan.py`` decides when that cannot change the result).

Each batch is a whole epoch of a split, cut here into the image path's minibatches (same
order, same size) with manual optimisation: the same optimizer steps and schedule, without
Lightning's per-batch loop (hooks, logging, fetching), which costs ten times a linear
head's step on a feature batch (docs/speed.md). A linear classifier's gradients are set in
closed form. Checkpoints written during the run hold only the head; ``on_fit_end`` writes
them in full once.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from tl_experiments.atomic import write_atomic
from tl_experiments.errors import UserError
from tl_experiments.models.module import TransferModule

__all__ = ["CachedHeadModule"]


class CachedHeadModule(TransferModule):
    """A :class:`TransferModule` whose batches are cached features (one epoch each) and
    whose frozen body never runs.

    Args:
        *args, **kwargs: those of :class:`TransferModule`.
        batch_size: the image path's minibatch size, used to cut each epoch.
        frozen_digest: the hash of the frozen body's weights: a head-only checkpoint loads
            only over the same body.
    """

    def __init__(self, *args, batch_size: int, frozen_digest: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.feature_batch_size = batch_size
        self.frozen_digest = frozen_digest
        self.automatic_optimization = False
        self.backbone.eval()  # train() toggles only the classifier
        self._frozen_keys = frozenset(self._frozen_state())  # fixed while it stays frozen

    @property
    def _head_drop_rate(self) -> float:
        """timm's dropout before the classifier (``drop_rate``; 0 where a model has none)."""
        return float(getattr(self.backbone, "drop_rate", 0.0) or 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The rest of timm's forward_head after the pre-logits features: dropout, classifier.
        x = F.dropout(x, p=self._head_drop_rate, training=self.training)
        return self.backbone.get_classifier()(x)

    def train(self, mode: bool = True) -> CachedHeadModule:
        self.training = mode  # only the classifier runs; the frozen body stays in eval
        self.backbone.get_classifier().train(mode)
        return self

    def on_validation_model_eval(self) -> None:
        self.train(False)

    def on_validation_model_train(self) -> None:
        # Only the classifier has a mode that matters: Lightning's default would write back
        # the flag of each of the body's few hundred submodules (docs/speed.md).
        self.train(True)

    def on_validation_model_zero_grad(self) -> None:
        # Only the classifier has gradients: skip the frozen body's few hundred tensors.
        self.backbone.get_classifier().zero_grad()

    def training_step(self, batch, batch_idx: int) -> None:
        self._train_epoch_on_features(batch)

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)  # the whole split: its accuracy, directly
        if self.trainer.state.fn == "fit":
            self._log_x_axis(self.global_step - 1)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True)
        self.log("val/acc", (logits.argmax(-1) == y).float().mean(), on_epoch=True, prog_bar=True)

    def _optimizer_groups(self) -> list[dict]:
        # Only the head trains: a step over the frozen stages' empty groups would cost more
        # than the head's own.
        return self.plan.param_groups(self.stages, only=[self.stages[-1].index])

    def _total_steps(self) -> int:
        epochs_of_batches = super()._total_steps()  # also sets up the train loader
        n = len(self.trainer.train_dataloader.dataset)  # a batch is a whole epoch
        return epochs_of_batches * math.ceil(n / self.feature_batch_size)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        # The body is frozen for the whole run, so it still holds the weights it started
        # with: the checkpoints written every epoch keep only the head (KB, not MB).
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if k not in self._frozen_keys
        }
        checkpoint["tl_experiments"]["frozen_backbone"] = self.frozen_digest

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        digest = checkpoint.get("tl_experiments", {}).get("frozen_backbone")
        if digest is None:
            resuming = _fitting(self)
            groups = [len(s["param_groups"]) for s in checkpoint.get("optimizer_states", [])]
            if resuming and groups and groups[0] != 1:
                raise UserError(
                    "This run trains on cached features (only the head in the optimizer), "
                    "but the checkpoint comes from a run that trained on images; resume "
                    "with that run's settings (e.g. feature_cache.enabled=false)."
                )
            return
        if digest != self.frozen_digest:
            raise UserError(
                "This checkpoint holds only the head of a feature-cached run, and this "
                "run's frozen backbone differs from that run's (weights hash "
                f"{self.frozen_digest} vs {digest}); resume with the same model and weights."
            )
        checkpoint["state_dict"] = {**self._frozen_state(), **checkpoint["state_dict"]}

    def _frozen_state(self) -> dict[str, torch.Tensor]:
        head = {f"backbone.{k}" for k in self.stages[-1].param_names}
        state = self.state_dict()
        return {k: v for k, v in state.items() if k.startswith("backbone.") and k not in head}

    def on_fit_end(self) -> None:
        """Write the head-only checkpoints of a feature-cached run in full, once."""
        ckpt_cb = self.trainer.checkpoint_callback
        if ckpt_cb is None or not self.trainer.is_global_zero:
            return
        for path in {ckpt_cb.best_model_path, ckpt_cb.last_model_path} - {""}:
            if Path(path).is_symlink():
                continue  # last.ckpt -> best.ckpt: the target is written
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if "frozen_backbone" not in ckpt["tl_experiments"]:
                continue  # already full (a resumed fit with nothing left to do)
            self.on_load_checkpoint(ckpt)
            del ckpt["tl_experiments"]["frozen_backbone"]
            write_atomic(Path(path), lambda tmp, c=ckpt: torch.save(c, tmp))

    def _train_epoch_on_features(self, batch) -> None:
        """A whole epoch of cached features: the image path's minibatches and steps."""
        x, y = batch
        opt, sched = self.optimizers(), self.lr_schedulers()
        # Lightning's own optimizer step (public): it counts the step (global_step) and runs
        # the on_before_optimizer_step hooks, as on the image path. The gradients are set
        # before it (closed form, or autograd for other heads), so its closure is empty.
        head = self.backbone.get_classifier()
        linear = type(head) is nn.Linear
        if linear:  # soft targets of the whole epoch, sliced per minibatch
            target = self._soft_targets(y, head.out_features)
        outputs = []
        n = self.feature_batch_size
        for i, (xb, yb) in enumerate(zip(x.split(n), y.split(n), strict=True)):
            if linear:
                logits = self._linear_head_grads(head, xb, target[i * n : (i + 1) * n])
            else:
                loss, logits, _ = self._step((xb, yb))
                opt.zero_grad()
                self.manual_backward(loss)
            opt.step()
            if sched is not None:
                sched.step()
            outputs.append(logits.detach())
        # Loss, accuracy and the NaN check once an epoch (an epoch here takes milliseconds),
        # in float32: the loss averaged over all N samples = the size-weighted mean of the
        # minibatches' losses, as the image path logs it.
        logits = torch.cat(outputs).float()
        mean_loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self._check_finite(mean_loss)
        accuracy = (logits.argmax(-1) == y).sum() / len(y)  # = micro accuracy
        for name, value in (("train/loss", mean_loss), ("train/acc", accuracy)):
            self.log(name, value, on_step=False, on_epoch=True, prog_bar=True)
        self._log_x_axis(self.global_step - 1)

    def _log_x_axis(self, step: int) -> None:
        """Lightning logs at its count of batches, here one an epoch; a logged ``step`` is
        its documented way to set the x axis, here ``step``: the image path's (Lightning
        logs an epoch's values at its last optimizer step, one before the count). The
        ``epoch`` value Lightning adds otherwise is left out: a log call costs a share of a
        cached epoch (docs/speed.md)."""
        self.log("step", float(step), on_step=False, on_epoch=True)

    def _soft_targets(self, y: torch.Tensor, classes: int) -> torch.Tensor:
        """The targets of F.cross_entropy with this run's label smoothing, as rows."""
        eps = self.label_smoothing
        return F.one_hot(y, classes).float().mul_(1 - eps).add_(eps / classes)

    @torch.no_grad()
    def _linear_head_grads(
        self, head: nn.Linear, x: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """The logits of one minibatch through a linear classifier, and the gradients of
        its cross-entropy loss set on the classifier, in closed form: d loss / d logits =
        (softmax(logits) - target) / batch size, with ``target`` from ``_soft_targets``.
        The same gradients as autograd's (tested), without its engine, which costs more per
        step than this step's arithmetic (docs/speed.md). In the dtype autograd would use:
        autocast's (bf16-mixed) or else the weights' own; the softmax in float32, as
        F.cross_entropy computes it under autocast."""
        w, b = head.weight, head.bias
        device = x.device.type
        autocast = torch.is_autocast_enabled(device)
        dtype = torch.get_autocast_dtype(device) if autocast else w.dtype
        with torch.autocast(device, enabled=False):
            p = self._head_drop_rate
            x = F.dropout(x, p=p, training=True) if p else x  # as timm's forward_head
            x = x.to(dtype)
            logits = F.linear(x, w.to(dtype), None if b is None else b.to(dtype))
            g = logits.float().softmax(1).sub_(target).div_(len(x)).to(dtype)
            w.grad = (g.t() @ x).to(w.dtype)
            if b is not None:
                b.grad = g.sum(0).to(b.dtype)
        return logits


def _fitting(module: TransferModule) -> bool:
    """Whether ``module`` is attached to a trainer that is fitting (a resume)."""
    try:
        return module.trainer.state.fn == "fit"
    except RuntimeError:  # not attached to a trainer: loaded outside any fit
        return False
