"""The steps of a head trained on cached features (``cached_features.py``), as a mixin of
:class:`~tl_experiments.models.module.TransferModule`: one whole epoch per batch with
manual optimisation, closed-form gradients for a linear classifier, head-only checkpoints
during the run. Only ``use_cached_features`` turns it on."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from tl_experiments.atomic import write_atomic

__all__ = ["FeatureHeadSteps"]


class FeatureHeadSteps:
    """Methods of a :class:`TransferModule` that train its head on cached features."""

    def use_cached_features(self, batch_size: int, frozen_digest: str) -> None:
        """Train on cached features (``cached_features.py``): each batch is a whole epoch
        of a split, which ``training_step`` cuts into ``batch_size`` minibatches.

        Lightning's loop costs about a millisecond per batch (hooks, logging, fetching), ten
        times a linear head's step on a feature batch; so the epoch's minibatches (same
        order, same size as the image path) run inside one step, with manual optimisation:
        the same optimizer steps and schedule, a fraction of the overhead.
        ``frozen_digest`` is the hash of the frozen backbone's weights: checkpoints written
        meanwhile hold only the head (see ``on_save_checkpoint``).
        """
        self.features_input = True
        self.feature_batch_size = batch_size
        self.frozen_digest = frozen_digest
        self.automatic_optimization = False
        self.backbone.eval()  # train() now toggles only the classifier
        self._frozen_keys = frozenset(self._frozen_state())  # fixed while it stays frozen

    def _frozen_state(self) -> dict[str, torch.Tensor]:
        head = {f"backbone.{k}" for k in self.stages[-1].param_names}
        state = self.state_dict()
        return {k: v for k, v in state.items() if k.startswith("backbone.") and k not in head}

    def on_fit_end(self) -> None:
        """Write the head-only checkpoints of a feature-cached run in full, once."""
        ckpt_cb = self.trainer.checkpoint_callback
        if not (self.features_input and ckpt_cb is not None and self.trainer.is_global_zero):
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
        lightning_opt, sched = self.optimizers(), self.lr_schedulers()
        # The torch optimizer itself: Lightning's wrappers (precision plugin, strategy,
        # closure, hooks) cost about 1 ms a step, several times a linear head's step.
        # Neither has work to do here: fp16's loss scaler blocks the cache (cache_blocker).
        # The step count (trainer.global_step) is kept by Lightning's own step callbacks.
        opt = lightning_opt.optimizer
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
                loss.backward()
            lightning_opt._on_before_step()
            opt.step()
            lightning_opt._on_after_step()
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
        # Lightning logs (self.log, LearningRateMonitor) at its count of batches; counting
        # this epoch's minibatches keeps the x axis in optimizer steps, as on the image path.
        self.trainer.fit_loop.epoch_loop._batches_that_stepped += math.ceil(len(y) / n) - 1

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
        step (about 0.1 ms) than this step's arithmetic. In the dtype autograd would use:
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
