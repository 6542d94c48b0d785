"""``create_datamodule``: from plain config values to a ready :class:`ImageDataModule`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch.nn as nn

from tl_experiments.data.datamodule import ImageDataModule
from tl_experiments.data.sources import ImageSet, load_source
from tl_experiments.data.split import make_splits
from tl_experiments.data.transforms import build_transforms
from tl_experiments.errors import require_number, require_seed

__all__ = ["WHERE_KEYS", "DataSpec", "build_data", "create_datamodule", "load_image_set"]

log = logging.getLogger(__name__)


# Keys of conf/data/ that say where the images come from; every other key is a DataSpec's.
WHERE_KEYS = ("name", "source", "source_args", "root")


@dataclass(frozen=True)
class DataSpec:
    """How a run draws and serves its images: every ``conf/data`` key but where they come
    from (``WHERE_KEYS``). The one place these defaults live.

    ``split_seed`` fixes validation and test; the run's ``seed`` draws the
    ``samples_per_class`` training subset and the batch order.
    """

    samples_per_class: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int | str = "auto"  # auto: data/cached.py
    augment: bool = False
    crop_pct: float = 1.0
    aug: Mapping | None = None
    skip_bad_images: bool = False
    refuse_duplicates: bool = False

    @classmethod
    def from_config(cls, data: Mapping) -> DataSpec:
        """From a resolved ``conf/data`` mapping, whose keys Hydra has checked
        (``DataSchema``, :mod:`tl_experiments.config_schema`); a key this version does not
        know (a checkpoint's config, written by another version) is left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check(self, img_size: int) -> None:
        """Every number is a number of the right kind (one sentence naming the key if not)."""
        require_number("model.img_size", img_size, integer=True, positive=True)
        require_number("data.batch_size", self.batch_size, integer=True, positive=True)
        require_number("data.val_fraction", self.val_fraction)
        require_number("data.test_fraction", self.test_fraction)
        require_seed("data.split_seed", self.split_seed)
        if self.samples_per_class is not None:
            require_number("data.samples_per_class", self.samples_per_class, integer=True)


def load_image_set(source: str, source_args: Mapping | None = None) -> ImageSet:
    """Load a data source by name (see :data:`tl_experiments.data.SOURCES`)."""
    return load_source(source, **dict(source_args or {}))


def build_data(
    data: Mapping,
    backbone: nn.Module,
    img_size: int,
    seed: int,
    image_set: ImageSet | None = None,
) -> tuple[ImageDataModule, dict]:
    """A resolved ``conf/data`` mapping to a ready data module and timm's data config: the
    one way train and advise turn a data config into loaders (``image_set``: already
    loaded from ``data``, e.g. for its class names)."""
    if image_set is None:
        image_set = load_image_set(data["source"], data.get("source_args"))
    return create_datamodule(image_set, backbone, img_size, DataSpec.from_config(data), seed)


def create_datamodule(
    image_set: ImageSet,
    backbone: nn.Module,
    img_size: int,
    spec: DataSpec | None = None,
    seed: int = 0,
    **settings,
) -> tuple[ImageDataModule, dict]:
    """Split ``image_set``, build transforms from ``backbone``'s pretrained config, and
    check every image of every split (it decodes; no image is in two splits).

    Args:
        spec: how to draw and serve the images; or give its fields as ``settings``.
        seed: the run's seed (the training subset and the batch order).

    Returns:
        The data module and the resolved timm data config (mean, std, input size...).
    """
    spec = spec or DataSpec(**settings)
    spec.check(img_size)
    splits = make_splits(
        image_set.labels,
        image_set.splits,
        spec.val_fraction,
        spec.test_fraction,
        spec.samples_per_class,
        spec.split_seed,
        draw_seed=seed,
    )
    train_tf, eval_tf, data_cfg = build_transforms(
        backbone, img_size, spec.augment, spec.crop_pct, **dict(spec.aug or {})
    )
    dm = ImageDataModule(
        image_set,
        splits,
        train_tf,
        eval_tf,
        spec.augment,
        img_size,
        batch_size=spec.batch_size,
        eval_batch_size=spec.eval_batch_size,
        num_workers=spec.num_workers,
        seed=seed,
        skip_bad_images=spec.skip_bad_images,
    )
    _warn_missing_classes(image_set, dm.splits)
    dm.check_images(spec.refuse_duplicates)
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
