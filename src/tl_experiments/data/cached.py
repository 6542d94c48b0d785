"""Which splits are held in memory, how, and how many worker processes serve the rest.

A deterministic split (no random augmentation) that fits the memory budget is decoded and
resized once, in DataLoader workers, and held as uint8: one byte a channel, as the image
was, a quarter of float32. It is converted to float and normalised on access, which gives
the same tensors as the transform would (``to_tensor`` divides by 255 the same way).
Everything else streams from disk: decoding and augmentation run in DataLoader worker
processes, so a folder of tens of thousands of photos costs no more memory than its file
names and the held splits.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import Compose

__all__ = ["CACHE_LIMIT_BYTES", "HeldImages", "auto_workers", "hold_split", "split_transform"]

# The uint8 bytes all held splits may take together: validation first (read every epoch),
# then training, then test. A 20,000-photo folder at 224 px holds validation and test
# (6,000 images, 0.9 GB) and streams its 14,000 training images.
CACHE_LIMIT_BYTES = 1024**3
_TO_TENSOR = ("ToTensor", "MaybeToTensor")


def auto_workers() -> int:
    """``data.num_workers: auto`` for a split read from files: one worker per core this
    process may use, at most 8 (decoding a JPEG is a few ms; more workers only add memory)."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


def split_transform(transform: Callable) -> tuple[Callable, Callable] | None:
    """A transform ``Compose([PIL steps..., ToTensor, tensor steps...])`` as its PIL part
    and its tensor part (after ``to_tensor``); None when it does not have that shape."""
    steps = getattr(transform, "transforms", None)
    if not steps:
        return None
    at = [i for i, step in enumerate(steps) if type(step).__name__ in _TO_TENSOR]
    if len(at) != 1:
        return None
    return Compose(steps[: at[0]]), Compose(steps[at[0] + 1 :])


def to_uint8(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class HeldImages(Dataset):
    """A split held in memory as uint8 (N, 3, H, W), served as the transform serves it."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, tail: Callable) -> None:
        self.images, self.labels, self.tail = images, labels, tail

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tail(self.images[i].float().div(255)), self.labels[i]

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """The normalised images at ``index`` as one float batch."""
        return self.tail(self.images[index].float().div(255))


def hold_split(dataset: Dataset, tail: Callable, num_workers: int) -> HeldImages:
    """Decode ``dataset`` (yielding uint8 images, see :func:`to_uint8`) into one
    preallocated uint8 tensor, in ``num_workers`` worker processes."""
    loader = DataLoader(dataset, batch_size=64, num_workers=num_workers)
    images, labels, start = None, torch.empty(len(dataset), dtype=torch.long), 0
    for x, y in loader:
        if images is None:
            images = torch.empty((len(dataset), *x.shape[1:]), dtype=torch.uint8)
        images[start : start + len(x)] = x
        labels[start : start + len(x)] = y
        start += len(x)
    return HeldImages(images, labels, tail)
