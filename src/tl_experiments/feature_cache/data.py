"""The data a feature-cached run trains on: each split's backbone features, computed when
the split is first needed, served as one whole epoch per batch (``module.py`` cuts it into
the image path's minibatches)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from tl_experiments.data.datamodule import EpochSeededSampler, ImageDataModule, SplitDataModule

__all__ = ["CachedFeatureData", "FeatureSplit", "WholeEpochSampler"]


class FeatureSplit(Dataset):
    """Cached features of a split, indexed by a whole epoch's order at once."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[order], self.labels[order]


class WholeEpochSampler(EpochSeededSampler):
    """One item per epoch: the epoch's whole order (the same order as
    :class:`EpochSeededSampler`'s, or ``0..n-1`` when not shuffling)."""

    def __init__(self, n: int, seed: int, shuffle: bool) -> None:
        super().__init__(n, seed)
        self.shuffle = shuffle

    def __iter__(self):
        return iter([self.order() if self.shuffle else torch.arange(self.n)])

    def __len__(self) -> int:
        return 1


class CachedFeatureData(SplitDataModule):
    """The loaders of an :class:`ImageDataModule`, serving features instead of images.

    Everything else (splits, class names, skipped images, the image datasets the analysis
    reads) is the image data module's, read through.

    Args:
        images: the run's image data module.
        features: ``features(split)`` computes (or finds) the split's backbone features,
            in the order of ``images.splits[split]``.
    """

    def __init__(self, images: ImageDataModule, features: Callable[[str], torch.Tensor]) -> None:
        super().__init__()
        self.images, self.features = images, features
        self.datasets: dict[str, FeatureSplit] = {}

    def __getattr__(self, name: str) -> Any:
        # Only for names this module lacks (LightningDataModule's own are found first).
        if name in ("images", "features", "datasets"):
            raise AttributeError(name)
        return getattr(self.images, name)

    @property
    def train_batches(self) -> int:
        """One step an epoch: a cached split is served whole."""
        return 1

    def split_dataset(self, split: str) -> FeatureSplit:
        if split not in self.datasets:
            features = self.features(split)  # first: it may drop unreadable images
            idx = self.images.splits[split]
            labels = torch.as_tensor(self.images.image_set.labels[idx], dtype=torch.long)
            self.datasets[split] = FeatureSplit(features, labels)
        return self.datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.split_dataset(split)  # a whole epoch per batch; no workers needed
        sampler = WholeEpochSampler(len(ds), self.images.seed, shuffle)
        return DataLoader(ds, batch_size=None, sampler=sampler)
