"""Pre-logits features of a frozen backbone, computed once per split instead of every epoch.

Feature extraction (and any phase that trains only the classifier on deterministic
inputs) spends nearly all its time running the same frozen backbone over the same images.
Lightning's ``BackboneFinetuning``, fastai and timm all pay that cost every epoch; here it
is paid once. Features are cached in memory, and optionally on disk (``cache_dir``), keyed
on everything that changes them: architecture, weights, data source and selection,
transform and image size. Disk writes go to a temp file and are renamed into place, so
two sweep jobs racing on the same key never leave a corrupt file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from tl_experiments.atomic import write_atomic
from tl_experiments.models.weights import weights_digest

__all__ = ["FeatureCache", "cache_key", "extract_features", "weights_digest"]


def cache_key(**parts) -> str:
    """A stable hash of JSON-able parts (numpy index arrays are hashed by content)."""

    def norm(v):
        if isinstance(v, np.ndarray):
            return hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
        if isinstance(v, tuple | list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in sorted(v.items())}
        return v

    blob = json.dumps(norm(parts), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    dataset: Dataset,
    channels_last: bool = False,
    batch_size: int = 128,
    num_workers: int = 0,
) -> torch.Tensor:
    """Pooled pre-logits features (what the classifier sees) for every item, in eval mode;
    images read from files are decoded in ``num_workers`` DataLoader workers."""
    was_training = backbone.training
    backbone.eval()
    feats = []
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # Its own generator: a DataLoader otherwise draws a seed from the global RNG, and a
    # cache hit (no extraction) would then leave dropout masks other than a miss does.
    loader = DataLoader(
        dataset, batch_size, shuffle=False, generator=torch.Generator(), num_workers=num_workers
    )
    for x, _ in loader:
        x = x.contiguous(memory_format=fmt)
        feats.append(backbone.forward_head(backbone.forward_features(x), pre_logits=True))
    backbone.train(was_training)
    return torch.cat(feats)


class FeatureCache:
    """In-memory feature store, backed by ``cache_dir`` when one is given."""

    _memory: dict[str, torch.Tensor] = {}  # shared by all instances in one process

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.dir = Path(cache_dir) if cache_dir else None
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: str, compute) -> torch.Tensor:
        """The features for ``key``: from memory, from disk, or by calling ``compute()``."""
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = self.dir / f"{key}.pt" if self.dir else None
        if path is not None and path.is_file():
            feats = torch.load(path, map_location="cpu", weights_only=True)
            self.hits += 1
        else:
            feats = compute()
            self.misses += 1
            if path is not None:
                write_atomic(path, lambda tmp: torch.save(feats, tmp))
        self._memory[key] = feats
        return feats

    @classmethod
    def clear_memory(cls) -> None:
        cls._memory.clear()
