"""The LightningDataModule over an :class:`ImageSet` and its splits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import Compose

from tl_experiments.data.cached import (
    CACHE_LIMIT_BYTES,
    HeldImages,
    auto_workers,
    hold_split,
    split_transform,
    to_uint8,
)
from tl_experiments.data.checks import check_images, duplicate_message
from tl_experiments.data.sources import ImageSet
from tl_experiments.errors import UserError

__all__ = ["EpochSeededSampler", "ImageDataModule", "ImageDataset", "SplitDataModule", "to_pil"]

log = logging.getLogger(__name__)


def to_pil(item) -> Image.Image:
    """An RGB PIL image from a uint8 array (grayscale becomes 3 channels) or a file path.

    A file's EXIF orientation is applied (phone photos are stored sideways with a tag that
    says so), and 16-bit or float images are scaled to 8 bits, not clipped.
    """
    if isinstance(item, np.ndarray):
        return _rgb(Image.fromarray(item))
    try:
        with Image.open(item) as img:
            return _rgb(ImageOps.exif_transpose(img))
    # PIL reports a damaged file in several ways (OSError for truncation, SyntaxError for a
    # broken PNG chunk, ValueError for some bad headers).
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(
            f"Cannot read image '{item}' ({type(e).__name__}); remove or replace the file."
        ) from None


# PIL modes with more than 8 bits per pixel: convert("RGB") would clip them at 255.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _rgb(img: Image.Image) -> Image.Image:
    if img.mode not in _WIDE_MODES:
        return img.convert("RGB")
    a = np.asarray(img, dtype=np.float64)
    peak = float(a.max(initial=0.0))
    if img.mode == "F":  # floats: 0..1, 0..255 or 0..65535, whichever range holds them
        top = next((t for t in (1.0, 255.0, 65535.0) if peak <= t), peak)
    else:  # 16-bit files (PIL opens some as 32-bit "I"): the full 16-bit range is white
        top = 65535.0 if peak <= 65535 else peak
    a = np.clip(a, 0.0, None) * (255.0 / top)
    return Image.fromarray(np.round(a).astype(np.uint8)).convert("RGB")


class ImageDataset(Dataset):
    """Items of an :class:`ImageSet` at the given indices, transformed on access."""

    def __init__(self, items: list, labels: np.ndarray, transform: Callable) -> None:
        self.items, self.labels, self.transform = items, labels, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(to_pil(self.items[i])), int(self.labels[i])


class EpochSeededSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), not on the global random state.

    Lightning calls ``set_epoch`` on any sampler that has it, so a run resumed from a
    checkpoint draws the same batches as the run it continues.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.n


class SplitDataModule(pl.LightningDataModule):
    """Lightning's setup and loaders over ``split_dataset(split)`` and ``_loader(split,
    shuffle)``, which a subclass defines (images here, cached features in feature_cache/)."""

    def split_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")):
            self.split_dataset(split)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class ImageDataModule(SplitDataModule):
    """Train/val/test loaders: deterministic splits that fit the memory budget are held as
    uint8 (data/cached.py), the others stream from disk through DataLoader workers."""

    def __init__(
        self,
        image_set: ImageSet,
        splits: dict[str, np.ndarray],
        train_transform: Callable,
        eval_transform: Callable,
        augment: bool,
        img_size: int,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | str = "auto",
        seed: int = 0,
        skip_bad_images: bool = False,
    ) -> None:
        super().__init__()
        self.seed, self.skip_bad_images = seed, skip_bad_images
        self.skipped: dict[str, list[str]] = {}  # split -> unreadable files left out
        if batch_size <= 0:
            raise UserError(f"data.batch_size={batch_size} must be positive.")
        if num_workers != "auto" and not (isinstance(num_workers, int) and num_workers >= 0):
            raise UserError(
                f"data.num_workers={num_workers} is not a worker count; set data.num_workers "
                "to auto or a whole number (0 = load in the main process)."
            )
        self.image_set, self.splits = image_set, splits
        self.transforms = {
            "train": train_transform if augment else eval_transform,
            "val": eval_transform,
            "test": eval_transform,
        }
        self.deterministic = {"train": not augment, "val": True, "test": True}
        self.img_size, self.batch_size, self.num_workers = img_size, batch_size, num_workers
        # Evaluation keeps no activations for backward, so it usually affords larger batches
        # (faster per image on CPU); the results do not depend on the batch size.
        self.eval_batch_size = eval_batch_size or 4 * batch_size
        self.image_datasets: dict[str, Dataset] = {}
        self._held: set[str] | None = None

    @property
    def train_batches(self) -> int:
        """Optimizer steps in one training epoch."""
        return -(-len(self.splits["train"]) // self.batch_size)

    @property
    def class_names(self) -> list[str]:
        return self.image_set.class_names

    def held_splits(self) -> set[str]:
        """The deterministic splits held in memory: validation, training, test, each while
        the uint8 bytes of all fit ``CACHE_LIMIT_BYTES``."""
        if self._held is None:
            budget, self._held = CACHE_LIMIT_BYTES, set()
            for split in ("val", "train", "test"):
                need = len(self.splits.get(split, ())) * 3 * self.img_size**2
                if split in self.splits and self.deterministic[split] and need <= budget:
                    self._held.add(split)
                    budget -= need
        return self._held

    def workers(self, split: str | None = None) -> int:
        """DataLoader workers for ``split`` (or for reading the images): none for a held
        split or in-memory images; ``data.num_workers`` (auto: one per core, at most 8)."""
        if split is not None and isinstance(self.image_datasets.get(split), HeldImages):
            return 0
        if self.num_workers != "auto":
            return int(self.num_workers)
        from_files = len(self.image_set) > 0 and not isinstance(self.image_set.items[0], np.ndarray)
        return auto_workers() if from_files else 0

    def image_dataset(self, split: str) -> Dataset:
        """The images of one split: held in memory (uint8) or read on access."""
        if split not in self.image_datasets:
            idx = self.splits[split]
            items = [self.image_set.items[i] for i in idx]
            labels = self.image_set.labels[idx]
            ds: Dataset = ImageDataset(items, labels, self.transforms[split])
            parts = split_transform(self.transforms[split])
            if split in self.held_splits() and parts is not None:
                decode = ImageDataset(items, labels, Compose([parts[0], to_uint8]))
                ds = hold_split(decode, parts[1], self.workers(split))
            self.image_datasets[split] = ds
        return self.image_datasets[split]

    def check_images(self, refuse_duplicates: bool = False) -> None:
        """Decode every image of every split now, before anything trains or is written, and
        report images that are in two splits (refused with ``refuse_duplicates``)."""
        start = time.perf_counter()
        items, workers = self.image_set.items, self.workers()
        found = check_images(items, self.splits, self.skip_bad_images, to_pil, workers)
        self.splits, self.skipped = found.splits, found.skipped
        if found.duplicates:
            message = duplicate_message(found.duplicates, refuse_duplicates)
            if refuse_duplicates:
                raise UserError(message)
            log.warning(message)
        seconds = time.perf_counter() - start
        if seconds > 2.0:
            n = sum(len(v) for v in self.splits.values())
            log.info("Checked %d images (every split) in %.1f s.", n, seconds)

    def split_dataset(self, split: str) -> Dataset:
        return self.image_dataset(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.image_dataset(split)
        sampler = EpochSeededSampler(len(ds), self.seed) if shuffle else None
        workers = self.workers(split)
        return DataLoader(
            ds,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=workers > 0 and torch.cuda.is_available(),
        )
