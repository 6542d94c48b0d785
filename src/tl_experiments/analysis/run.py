"""After test: what transfer did to the network, in one call (``analysis`` in conf/train.yaml)."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import replace

import pytorch_lightning as pl
import torch
import torch.nn as nn

from tl_experiments.analysis.cka import linear_cka
from tl_experiments.analysis.drift import weight_drift
from tl_experiments.analysis.features import stage_features
from tl_experiments.analysis.imagenet import imagenet_agreement
from tl_experiments.analysis.images import split_images
from tl_experiments.analysis.photos import natural_photos
from tl_experiments.analysis.shifts import SHIFTS, shift_accuracy
from tl_experiments.analysis.wise_ft import ALPHAS, log_curve, wise_ft_curve
from tl_experiments.config_schema import AnalysisOptions
from tl_experiments.data.datamodule import ImageDataModule
from tl_experiments.errors import UserError
from tl_experiments.models import get_stages
from tl_experiments.models.backbone import ModelSpec, build_backbone
from tl_experiments.models.module import TransferModule

__all__ = ["AnalysisOptions", "analyze"]

log = logging.getLogger(__name__)


def analyze(
    module: TransferModule,
    dm: ImageDataModule,
    data_cfg: Mapping,
    w0: dict[str, torch.Tensor],
    options: AnalysisOptions | Mapping,
    model_cfg: Mapping,
    trainer: pl.Trainer | None = None,
) -> dict:
    """Drift, CKA, ImageNet-head agreement and shifted accuracy of the trained ``module``.

    Args:
        module: the trained module (best checkpoint loaded by ``trainer.test``).
        dm: its data module (val images feed CKA, test images the shifts).
        data_cfg: the resolved timm data config (``mean``, ``std``).
        w0: the backbone's state dict at the start of the run.
        options: an :class:`AnalysisOptions` or the ``analysis`` config as a mapping.
        model_cfg: ``arch``, ``weights`` and ``weights_file`` of the run's model config.
        trainer: the run's trainer, or None. Scalars go to its TensorBoard logger at its
            global step, and its ``limit_val_batches`` / ``limit_test_batches`` cap the
            images used here too, so a smoke run (``trainer=debug``) stays a smoke run.

    Returns:
        The ``metrics.json`` fields ``drift``, ``cka``, ``imagenet_agreement``,
        ``shift_acc``, ``wise_ft`` (None when skipped) and ``analysis_seconds``.
    """
    options = _capped(_options(options), trainer, dm.batch_size)
    start = time.perf_counter()
    backbone = module.backbone
    out: dict = {"drift": weight_drift(module.stages, w0), "cka": _cka(backbone, w0, dm, options)}
    out["imagenet_agreement"] = _agreement(module, model_cfg, data_cfg, options)
    out["shift_acc"] = None
    if options.shifts:
        images, labels = split_images(dm, "test", options.shift_max_images)
        _progress(f"accuracy on {len(SHIFTS)} shifted copies of {len(images)} test images")
        out["shift_acc"] = shift_accuracy(
            backbone, images, labels, data_cfg["mean"], data_cfg["std"], tuple(SHIFTS)
        )
    out["wise_ft"] = _wise_ft(module, w0, dm, data_cfg, options, out["drift"])
    out["analysis_seconds"] = round(time.perf_counter() - start, 3)
    if trainer is not None:
        _log(trainer.loggers, out, trainer.global_step)
    return out


def _options(options: AnalysisOptions | Mapping) -> AnalysisOptions:
    # A mapping is the composed ``analysis`` block: Hydra has checked its keys and types.
    return options if isinstance(options, AnalysisOptions) else AnalysisOptions(**options)


def _capped(
    options: AnalysisOptions, trainer: pl.Trainer | None, batch_size: int
) -> AnalysisOptions:
    """``options`` with image counts cut to what the trainer's integer batch limits allow."""
    if trainer is None:
        return options
    caps = {}
    for field, limit in (
        ("max_images", trainer.limit_val_batches),
        ("shift_max_images", trainer.limit_test_batches),
        ("photos", trainer.limit_test_batches),
        ("wise_ft_val_images", trainer.limit_val_batches),
    ):
        if isinstance(limit, int):  # a fraction (float) keeps the configured counts
            wanted = getattr(options, field)
            caps[field] = limit * batch_size if wanted is None else min(wanted, limit * batch_size)
    return replace(options, **caps)


def _wise_ft(module, w0, dm, data_cfg, options: AnalysisOptions, drift: dict) -> dict | None:
    """The WiSE-FT curve of a fine-tuning run: pretrained start, some backbone stage moved."""
    if not (options.wise_ft and module.strategy.pretrained and any(drift.values())):
        return None  # from scratch, or the backbone never trained (feature extraction)
    val = split_images(dm, "val", options.wise_ft_val_images)
    test = split_images(dm, "test", options.shift_max_images)
    shifts = tuple(SHIFTS) if options.shifts else ()
    _progress(
        f"WiSE-FT, {len(ALPHAS)} mixes of the pretrained and fine-tuned backbone on "
        f"{len(val[0])} validation and {len(test[0])} test images"
    )
    return wise_ft_curve(module.backbone, w0, val, test, data_cfg, shifts)


def _cka(
    backbone: nn.Module, w0: dict, dm: ImageDataModule, options: AnalysisOptions
) -> dict[str, float]:
    """Per stage, linear CKA of the starting and trained backbone on validation images."""
    images, _ = split_images(dm, "val", options.max_images)
    _progress(f"CKA of each stage to its starting features on {len(images)} validation images")
    start = copy.deepcopy(backbone)
    start.load_state_dict(w0)  # buffers too: BatchNorm statistics as they were
    before = stage_features(start, get_stages(start), images)
    after = stage_features(backbone, get_stages(backbone), images)
    return {name: linear_cka(before[name], after[name]) for name in before}


def _agreement(
    module: TransferModule, model_cfg: Mapping, data_cfg: Mapping, options: AnalysisOptions
) -> float | None:
    """ImageNet-head agreement, or None for a random start or weights without that head."""
    if not (
        module.strategy.pretrained
        and options.photos > 0
        and model_cfg.get("weights", "none") != "none"
    ):
        return None
    try:
        original, _ = build_backbone(ModelSpec.from_config(model_cfg), 1000, zero_head=False)
    except UserError as e:  # e.g. a fine-tuned file whose head is not ImageNet's
        log.info("ImageNet-head agreement skipped: %s", e)
        return None
    _progress(f"ImageNet-head agreement on {options.photos} natural photos")
    photos = natural_photos(options.photos, options.photo_size, data_cfg["mean"], data_cfg["std"])
    return imagenet_agreement(module.backbone, original, photos)


def _progress(part: str) -> None:
    """One line as each part of the analysis starts (a part can take minutes)."""
    log.info("Analysis: %s.", part)


def _log(loggers, out: dict, step: int) -> None:
    """The analysis as scalars, to every logger of the run (conf/logger/)."""
    scalars = {}
    for group, key in (("drift", "drift"), ("cka", "cka"), ("shift", "shift_acc")):
        for name, value in (out[key] or {}).items():
            scalars[f"{group}/{name}"] = value
    if out.get("wise_ft") is not None:
        log_curve(loggers, out["wise_ft"])
    if out["imagenet_agreement"] is not None:
        scalars["forgetting/imagenet_agreement"] = out["imagenet_agreement"]
    for logger in loggers:
        logger.log_metrics(scalars, step=step)
