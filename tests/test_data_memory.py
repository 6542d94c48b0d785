"""A folder of photos in bounded memory: held splits are uint8, the rest streams from disk
through DataLoader workers (issue 26, item 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tl_experiments.data.datamodule as datamodule
from tl_experiments.data import ImageDataset, create_datamodule, load_image_set, to_pil
from tl_experiments.data.cached import HeldImages
from tl_experiments.models import create_backbone

SIZE = 32


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """3 classes x 20 JPEGs of mixed sizes (40-90 px)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"c{c}").mkdir()
        for i in range(20):
            h, w = rng.integers(40, 90, size=2)
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.jpg", quality=90)
    return root


def _module(root: Path, **settings):
    backbone = create_backbone("test_resnet", 3, "none")
    image_set = load_image_set("image_folder", {"root": str(root)})
    settings = {"val_fraction": 0.2, "test_fraction": 0.2, "batch_size": 4} | settings
    return create_datamodule(image_set, backbone, SIZE, **settings)[0]


def test_held_splits_are_uint8_and_serve_what_the_transform_gives(photos: Path) -> None:
    dm = _module(photos)
    held = dm.image_dataset("val")
    assert isinstance(held, HeldImages) and held.images.dtype == torch.uint8
    assert held.images.shape == (len(dm.splits["val"]), 3, SIZE, SIZE)  # 1 byte a channel
    items = [dm.image_set.items[i] for i in dm.splits["val"]]
    direct = ImageDataset(items, dm.image_set.labels[dm.splits["val"]], dm.transforms["val"])
    for i in range(len(held)):
        assert torch.equal(held[i][0], direct[i][0]) and int(held[i][1]) == direct[i][1]


def test_a_split_over_the_memory_budget_streams_from_disk_in_workers(
    photos: Path, monkeypatch
) -> None:
    per_image = 3 * SIZE * SIZE
    monkeypatch.setattr(datamodule, "CACHE_LIMIT_BYTES", 30 * per_image)  # val + test: 24
    monkeypatch.setattr(datamodule, "auto_workers", lambda: 2)
    dm = _module(photos)
    assert dm.held_splits() == {"val", "test"}
    dm.setup("fit")
    train = dm.image_dataset("train")
    assert type(train) is ImageDataset and all(isinstance(p, Path) for p in train.items)
    held = sum(dm.image_dataset(s).images.nbytes for s in ("val", "test"))
    assert held <= 30 * per_image
    loader = dm.train_dataloader()
    assert (loader.num_workers, loader.persistent_workers) == (2, True)
    assert dm.val_dataloader().num_workers == 0  # held: nothing to decode
    x, y = next(iter(loader))
    assert x.shape == (4, 3, SIZE, SIZE) and x.dtype == torch.float32 and len(y) == 4


def test_augmented_training_streams_and_in_memory_sources_use_no_workers(photos: Path) -> None:
    dm = _module(photos, augment=True)
    assert "train" not in dm.held_splits() and dm.workers("train") >= 1
    arrays = load_image_set("digits")
    backbone = create_backbone("test_resnet", 10, "none")
    small, _ = create_datamodule(arrays, backbone, SIZE, samples_per_class=5, augment=True)
    assert small.workers("train") == 0  # decoding arrays costs less than a worker process
    assert to_pil(arrays.items[0]).size == (8, 8)
