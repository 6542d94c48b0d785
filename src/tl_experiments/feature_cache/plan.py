"""Decide whether a run can train its head on cached features (and why not), and serve its
splits as features when it does.

The cache is used only when it cannot change the result: every stage below the classifier
stays frozen for the whole run, frozen BatchNorm keeps its statistics (``train_bn`` off),
the training images are deterministic (no random augmentation), and the classifier is one
module that takes vectors. The head stage is the new classifier alone: pretrained layers
between the last feature stage and it (a VGG ``pre_logits`` MLP, a ConvNeXt's final norm)
form the ``neck`` stage, so with the neck frozen the cache holds its output
(``forward_head(pre_logits=True)``); ``scripts/check_zoo.py`` checks that the classifier on
it gives the model's own logits, on every timm family.
It is not used either when the trainer would step differently on one batch per epoch
(gradient clipping, gradient accumulation, a limit on batches, several devices):
a cached split is served as one whole epoch per batch (``CachedHeadModule.training_step``).
"""

from __future__ import annotations

import logging
import time

import torch.nn as nn
from timm.layers import SelectAdaptivePool2d

from tl_experiments.data.datamodule import ImageDataModule
from tl_experiments.feature_cache.data import CachedFeatureData
from tl_experiments.feature_cache.store import (
    FeatureCache,
    cache_key,
    extract_features,
    weights_digest,
)
from tl_experiments.stages.groups import classifier_modules
from tl_experiments.strategies import StrategyPlan

log = logging.getLogger(__name__)

__all__ = ["cache_blocker", "cached_features"]

# Layers of a classifier that takes maps: DLA's and DPN's 1x1 convolution; Sequencer's
# get_classifier() returns the whole head, global pooling included.
_TAKES_MAPS = (nn.Conv2d, SelectAdaptivePool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

# Trainer arguments the cached path (one batch per epoch, manual optimisation) needs as is.
_TRAINER_DEFAULTS = {
    "devices": 1,
    "num_nodes": 1,
    "gradient_clip_val": None,
    "accumulate_grad_batches": 1,
    "limit_train_batches": 1.0,
    "limit_val_batches": 1.0,
    "limit_test_batches": 1.0,
    "val_check_interval": 1.0,
    "overfit_batches": 0.0,
    "max_steps": -1,
}


def cache_blocker(
    plan: StrategyPlan,
    backbone: nn.Module,
    dm: ImageDataModule,
    trainer_args: dict | None = None,
) -> str | None:
    """Why features cannot be cached for a run of ``plan`` on ``backbone``, or ``None``
    when they can."""
    for key, default in _TRAINER_DEFAULTS.items():
        value = (trainer_args or {}).get(key, default)
        # By type too: Lightning reads limit_train_batches=1 (int) as one batch.
        if type(value) is not type(default) or value != default:
            return f"trainer.{key}={value} (the cached path needs {default})"
    precision = str((trainer_args or {}).get("precision", "32-true"))
    if precision in ("16", "16-mixed"):  # Lightning's names for fp16 autocast + GradScaler
        return f"trainer.precision={precision} (fp16 needs a loss scaler at every step)"
    # A schedule whose later phases never start (lp_ft in 1 epoch) trains the head alone.
    if not plan.head_only:
        kinds = "" if plan.kinds == ("all",) else f" ({'/'.join(plan.kinds)} only)"
        return f"stages below the head train{kinds}"
    if plan.frozen_bn_trains:
        return "train_bn updates frozen BatchNorm statistics"
    if plan.strategy.uses_l2sp:
        return "the L2-SP penalty is added on the image path only"
    if not dm.deterministic["train"]:
        return "random augmentation changes the training images every epoch"
    heads = classifier_modules(backbone)
    if len(heads) > 1:
        return "the model has several classifiers (distillation, auxiliary or per-branch heads)"
    if any(isinstance(m, _TAKES_MAPS) for m in heads[0].modules()):
        return (
            "the classifier takes feature maps (a 1x1 convolution, or its own pooling), "
            "the cache holds vectors"
        )
    return None


def cached_features(
    backbone: nn.Module,
    head_params: set[str],
    dm: ImageDataModule,
    cache: FeatureCache,
    key_parts: dict,
    channels_last: bool,
) -> tuple[str, CachedFeatureData]:
    """The digest of ``backbone``'s frozen body (its weights without ``head_params``) and
    every split of ``dm`` served as that body's features, each computed when the split is
    first needed. Keys include the body's exact weights."""
    body = {k: v for k, v in backbone.state_dict().items() if k not in head_params}
    digest = weights_digest(body)

    def features(split: str):
        if dm.skip_bad_images:
            dm.image_dataset(split)  # drops unreadable images: the key needs the rest
        key = cache_key(weights=digest, split=split, indices=dm.splits[split], **key_parts)
        start = time.perf_counter()
        found = cache.get_or_compute(
            key,
            lambda: extract_features(
                backbone, dm.image_dataset(split), channels_last, num_workers=dm.workers(split)
            ),
        )
        log.info("Backbone features of the %s split: %.1f s.", split, time.perf_counter() - start)
        return found

    return digest, CachedFeatureData(dm, features)
