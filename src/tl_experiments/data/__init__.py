"""Data sources, splits, transforms and the LightningDataModule."""

from tl_experiments.data.datamodule import ImageDataModule, ImageDataset, to_pil
from tl_experiments.data.factory import DataSpec, build_data, create_datamodule, load_image_set
from tl_experiments.data.sources import SOURCES, ImageSet, load_source
from tl_experiments.data.split import make_splits
from tl_experiments.data.transforms import build_transforms

__all__ = [
    "SOURCES",
    "DataSpec",
    "ImageDataModule",
    "ImageDataset",
    "ImageSet",
    "build_data",
    "build_transforms",
    "create_datamodule",
    "load_image_set",
    "load_source",
    "make_splits",
    "to_pil",
]
