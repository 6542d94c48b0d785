"""``create_datamodule``: from plain config values to a ready :class:`ImageDataModule`."""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn as nn

from tl_experiments.data.datamodule import ImageDataModule
from tl_experiments.data.sources import ImageSet, load_source
from tl_experiments.data.split import make_splits
from tl_experiments.data.transforms import build_transforms

__all__ = ["create_datamodule", "load_image_set"]


def load_image_set(source: str, source_args: Mapping | None = None) -> ImageSet:
    """Load a data source by name (see :data:`tl_experiments.data.SOURCES`)."""
    return load_source(source, **dict(source_args or {}))


def create_datamodule(
    image_set: ImageSet,
    backbone: nn.Module,
    img_size: int,
    samples_per_class: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    batch_size: int = 32,
    eval_batch_size: int | None = None,
    num_workers: int = 0,
    augment: bool = False,
    crop_pct: float = 1.0,
    aug: Mapping | None = None,
    seed: int = 0,
    skip_bad_images: bool = False,
) -> tuple[ImageDataModule, dict]:
    """Split ``image_set`` and build transforms from ``backbone``'s pretrained config.

    ``split_seed`` fixes validation and test; ``seed`` (the run's) draws the
    ``samples_per_class`` training subset and the batch order.

    Returns:
        The data module and the resolved timm data config (mean, std, input size...).
    """
    splits = make_splits(
        image_set.labels,
        image_set.splits,
        val_fraction,
        test_fraction,
        samples_per_class,
        split_seed,
        draw_seed=seed,
    )
    train_tf, eval_tf, data_cfg = build_transforms(
        backbone, img_size, augment, crop_pct, **dict(aug or {})
    )
    dm = ImageDataModule(
        image_set,
        splits,
        train_tf,
        eval_tf,
        augment,
        img_size,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        num_workers=num_workers,
        seed=seed,
        skip_bad_images=skip_bad_images,
    )
    return dm, data_cfg
