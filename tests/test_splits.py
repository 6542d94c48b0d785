"""The data a run sees: seeds redraw the training subset, validation and test stay fixed."""

from __future__ import annotations

import numpy as np
import timm

from tl_experiments.data import create_datamodule, load_image_set, make_splits


def _draw(seed: int, k: int | None, split_seed: int = 0) -> dict[str, np.ndarray]:
    labels = np.repeat(np.arange(4), 30)
    return make_splits(labels, {}, 0.1, 0.2, k, split_seed, draw_seed=seed)


def test_two_seeds_draw_different_training_images_on_the_same_val_and_test() -> None:
    image_set = load_image_set("mnist_sample")
    backbone = timm.create_model("test_resnet", num_classes=10)
    dm0, _ = create_datamodule(image_set, backbone, 32, samples_per_class=20, seed=0)
    dm1, _ = create_datamodule(image_set, backbone, 32, samples_per_class=20, seed=1)
    for split in ("val", "test"):
        np.testing.assert_array_equal(dm0.splits[split], dm1.splits[split])
    assert len(dm0.splits["train"]) == len(dm1.splits["train"]) == 200
    overlap = len(np.intersect1d(dm0.splits["train"], dm1.splits["train"]))
    assert overlap < 100  # 200 of a pool of 3,500: two draws share about 11 images
    again, _ = create_datamodule(image_set, backbone, 32, samples_per_class=20, seed=0)
    np.testing.assert_array_equal(again.splits["train"], dm0.splits["train"])


def test_draws_are_nested_for_one_seed() -> None:
    for seed in (0, 1, 7):
        draws = [set(_draw(seed, k)["train"]) for k in (1, 5, 10, 21)]
        assert all(small < big for small, big in zip(draws, draws[1:], strict=False))
        assert set(_draw(seed, None)["train"]) >= draws[-1]  # null = the whole pool


def test_split_seed_alone_moves_validation_and_test() -> None:
    a, b = _draw(0, 5, split_seed=0), _draw(3, 5, split_seed=0)
    assert all(np.array_equal(a[s], b[s]) for s in ("val", "test"))
    c = _draw(0, 5, split_seed=1)
    assert not np.array_equal(a["test"], c["test"])
