"""``build_run(cfg, image_set)``: the backbone with its starting weights (and LoRA adapters),
the strategy compiled once into its plan, the data, and the module that trains it, on
cached features when that cannot change the result (``feature_cache/plan.py``).

Every part is complete when it is constructed: the module gets its plan, metadata and speed
options as arguments, and the feature-cached variant is chosen before the module exists,
so nothing is set on it from outside afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tl_experiments.analysis import snapshot_weights
from tl_experiments.data import build_data
from tl_experiments.data.sources import ImageSet
from tl_experiments.feature_cache import (
    CachedHeadModule,
    FeatureCache,
    cache_blocker,
    cached_features,
)
from tl_experiments.models.backbone import ModelSpec, WeightsInfo, build_backbone
from tl_experiments.models.module import TransferModule
from tl_experiments.stages.stage import get_stages
from tl_experiments.strategies import Strategy, compile_plan
from tl_experiments.strategies.lora import adapters_for

__all__ = ["Built", "build_run", "create_module"]

log = logging.getLogger(__name__)


@dataclass
class Built:
    """What one run trains and tests."""

    module: TransferModule  # a CachedHeadModule on cached features
    dm: Any  # ImageDataModule, or CachedFeatureData serving its features
    data_cfg: dict  # timm's resolved data config (mean, std, input size...)
    w0: dict  # the backbone's starting weights, for drift and CKA
    weights: WeightsInfo  # where the starting weights came from


def _backbone_and_plan(cfg: DictConfig, num_classes: int):
    """The backbone with its starting weights and adapters, its plan, and the metadata
    every checkpoint keeps about them."""
    strategy = Strategy.from_dict(OmegaConf.to_container(cfg.strategy, resolve=True))
    spec = ModelSpec.from_config(cfg.model)
    backbone, info = build_backbone(
        spec, num_classes, strategy.pretrained, cfg.get("zero_head", True)
    )
    lora = adapters_for(backbone, strategy)  # peft LoRA adapters, when the strategy has them
    epochs = cfg.trainer.get("max_epochs")  # what trains when, compiled once for the run
    stages = get_stages(backbone)
    plan = compile_plan(strategy, stages, epochs, info.source != "none")
    meta = {"weights": asdict(info)} | ({"lora": lora} if lora else {})
    return backbone, stages, plan, info, meta


def _module_args(cfg: DictConfig, class_names: list[str], meta: dict) -> dict:
    speed = cfg.get("speed") or {}
    return {
        "class_names": class_names,
        "scheduler": instantiate(cfg.scheduler),  # conf/scheduler/: a factory (_partial_)
        "label_smoothing": cfg.label_smoothing,
        "meta": meta,
        "channels_last": bool(speed.get("channels_last")),
        "fused_optimizer": bool(speed.get("fused_optimizer")),
        "compile": bool(speed.get("compile")),
    }


def create_module(cfg: DictConfig, num_classes: int, class_names: list[str]) -> TransferModule:
    """The module of ``cfg`` on images (no data, no feature cache): backbone, plan, options."""
    backbone, _, plan, _, meta = _backbone_and_plan(cfg, num_classes)
    return TransferModule(backbone, plan, **_module_args(cfg, class_names, meta))


def build_run(cfg: DictConfig, image_set: ImageSet) -> Built:
    """The module and data of one run of ``cfg`` over ``image_set`` (seeded by the caller)."""
    class_names = list(image_set.class_names)
    backbone, plan_stages, plan, info, meta = _backbone_and_plan(cfg, len(class_names))
    w0 = snapshot_weights(backbone)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    dm, data_cfg = build_data(data, backbone, cfg.model.img_size, cfg.seed, image_set)
    meta |= {
        "arch": cfg.model.arch,
        "data_config": data_cfg,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    args = _module_args(cfg, class_names, meta)
    reason = "feature_cache.enabled=false"
    if cfg.feature_cache.enabled:
        trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
        reason = cache_blocker(plan, backbone, dm, trainer_args)
    if reason is not None:
        if cfg.feature_cache.enabled:
            log.info("Feature cache not used: %s.", reason)
        return Built(TransferModule(backbone, plan, **args), dm, data_cfg, w0, info)
    log.info("Feature cache: the frozen backbone runs once per split; the head trains on that.")
    key_parts = {
        "arch": cfg.model.arch,
        "source": cfg.data.source,
        "source_args": OmegaConf.to_container(cfg.data.source_args, resolve=True),
        "transform": data_cfg,
    }
    head = set(plan_stages[-1].param_names)
    cache = FeatureCache(cfg.feature_cache.dir)
    digest, features = cached_features(backbone, head, dm, cache, key_parts, args["channels_last"])
    # Its checkpoints keep the base: a cached run writes them head-only during the fit and
    # in full at its end (feature_cache/module.py), never in base_weights.py's form.
    plan = dataclasses.replace(plan, keeps_base=True)
    module = CachedHeadModule(
        backbone, plan, **args, batch_size=dm.batch_size, frozen_digest=digest
    )
    return Built(module, features, data_cfg, w0, info)
