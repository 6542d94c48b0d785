"""Decide whether a run can train its head on cached features, and switch it over.

The cache is used only when it cannot change the result: every stage below the classifier
stays frozen for the whole run, frozen BatchNorm keeps its statistics (``train_bn`` off),
the training images are deterministic (no random augmentation), and the head stage is the
bare classifier (a VGG ``pre_logits`` MLP or a ViT ``fc_norm`` would train inside it).
"""

from __future__ import annotations

from tl_experiments.data.datamodule import ImageDataModule
from tl_experiments.data.feature_cache import (
    FeatureCache,
    cache_key,
    extract_features,
    weights_digest,
)
from tl_experiments.models.module import TransferModule

__all__ = ["cache_blocker", "use_cached_features"]


def cache_blocker(module: TransferModule, dm: ImageDataModule) -> str | None:
    """Why features cannot be cached for this run, or ``None`` when they can."""
    stages, strategy = module.stages, module.strategy
    if any(s.trainable for s in stages[:-1]) or module.unfreezes_later:
        return "stages below the head train"
    if strategy.train_bn:
        return "train_bn updates frozen BatchNorm statistics"
    if not dm.deterministic["train"]:
        return "random augmentation changes the training images every epoch"
    head_ids = {id(p) for p in stages[-1].params}
    if head_ids != {id(p) for p in module.backbone.get_classifier().parameters()}:
        return "the head stage holds more than the classifier"
    return None


def use_cached_features(
    module: TransferModule, dm: ImageDataModule, cache: FeatureCache, key_parts: dict
) -> None:
    """Replace every split of ``dm`` by its backbone features; the module then runs only
    its classifier. Keys include the backbone's exact weights (the classifier excluded)."""
    head = set(module.stages[-1].param_names)
    body = {k: v for k, v in module.backbone.state_dict().items() if k not in head}
    digest = weights_digest(body)
    for split in ("train", "val", "test"):
        images = dm.split_dataset(split)
        key = cache_key(weights=digest, split=split, indices=dm.splits[split], **key_parts)
        feats = cache.get_or_compute(key, lambda ds=images: extract_features(module.backbone, ds))
        dm.use_features(split, feats)
    module.features_input = True
