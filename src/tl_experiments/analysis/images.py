"""Preprocessed images of a data split, even when the run trained on cached features."""

from __future__ import annotations

import numpy as np
import torch

from tl_experiments.data.cached import HeldImages
from tl_experiments.data.datamodule import ImageDataModule, to_pil

__all__ = ["split_images"]


def split_images(
    dm: ImageDataModule, split: str, limit: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised eval-transform images and labels of ``split``; at most ``limit`` of them.

    The subset is a seeded random draw (splits are stored sorted by index, and a source may
    store its images class by class), the same for every run of a sweep. Images come from
    the precomputed split when the data module holds them, else they are transformed again
    (a feature-cached run holds only backbone features).
    """
    n = len(dm.splits[split])
    pick = np.arange(n)
    if limit is not None and limit < n:
        pick = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    labels = torch.as_tensor(dm.image_set.labels[dm.splits[split][pick]], dtype=torch.long)
    held = dm.image_datasets.get(split)
    if isinstance(held, HeldImages):
        return held.batch(torch.as_tensor(pick)), labels
    transform = dm.transforms["val" if split == "train" else split]  # never augmented
    items = [dm.image_set.items[dm.splits[split][i]] for i in pick]
    return torch.stack([transform(to_pil(item)) for item in items]), labels
