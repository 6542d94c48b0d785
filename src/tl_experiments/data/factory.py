"""``create_datamodule``: from plain config values to a ready :class:`ImageDataModule`."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch.nn as nn

from tl_experiments.data.datamodule import ImageDataModule
from tl_experiments.data.sources import ImageSet, load_source
from tl_experiments.data.split import make_splits
from tl_experiments.data.transforms import build_transforms
from tl_experiments.errors import require_number

__all__ = ["create_datamodule", "load_image_set"]

log = logging.getLogger(__name__)


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
    refuse_duplicates: bool = False,
) -> tuple[ImageDataModule, dict]:
    """Split ``image_set``, build transforms from ``backbone``'s pretrained config, and
    check every image of every split (it decodes; no image is in two splits).

    ``split_seed`` fixes validation and test; ``seed`` (the run's) draws the
    ``samples_per_class`` training subset and the batch order.

    Returns:
        The data module and the resolved timm data config (mean, std, input size...).
    """
    require_number("model.img_size", img_size, integer=True, positive=True)
    require_number("data.batch_size", batch_size, integer=True, positive=True)
    require_number("data.val_fraction", val_fraction)
    require_number("data.test_fraction", test_fraction)
    if samples_per_class is not None:
        require_number("data.samples_per_class", samples_per_class, integer=True)
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
    _warn_missing_classes(image_set, dm.splits)
    dm.check_images(refuse_duplicates)
    return dm, data_cfg


def _warn_missing_classes(image_set: ImageSet, splits: dict) -> None:
    """A class too small to reach validation or test is measured on nothing: say so."""
    for split in ("val", "test"):
        present = set(image_set.labels[splits[split]].tolist())
        absent = [c for i, c in enumerate(image_set.class_names) if i not in present]
        if absent:
            log.warning(
                "Class(es) %s have no image in the %s split (too few images: %s); add "
                "images to them, or raise data.%s_fraction.",
                ", ".join(absent),
                split,
                ", ".join(
                    str(int((image_set.labels == image_set.class_names.index(c)).sum()))
                    for c in absent
                ),
                split,
            )
