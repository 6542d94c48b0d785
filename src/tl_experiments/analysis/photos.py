"""A small set of natural photos that ship inside dependencies, for ImageNet-head checks.

scikit-learn's ``china.jpg`` and ``flower.jpg`` are always there; scikit-image's colour
photos (astronaut, cat, coffee, rocket) are added when it is installed. Seeded random crops
of them fill the set up to the requested size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["load_photos", "natural_photos"]

_SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def load_photos() -> list[np.ndarray]:
    """The packaged photos as uint8 (H, W, 3) arrays, scikit-learn's first."""
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    try:
        from skimage import data
    except ImportError:
        return photos
    for name in _SKIMAGE_PHOTOS:
        try:
            photos.append(np.asarray(getattr(data, name)())[..., :3])
        except Exception:  # noqa: BLE001 - a photo that needs a download is simply skipped
            continue
    return photos


def natural_photos(
    n: int, size: int, mean: tuple[float, ...], std: tuple[float, ...], seed: int = 0
) -> torch.Tensor:
    """``n`` normalised (3, size, size) photos: each whole photo, then random square crops.

    Crops cover 20-100% of a photo's shorter side, at a random position (seeded).
    """
    photos = [
        torch.from_numpy(np.array(p, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
        for p in load_photos()
    ]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[1:]
        side = min(h, w) if i < len(photos) else int(min(h, w) * rng.uniform(0.2, 1.0))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        if i < len(photos):  # the whole photo: a centre square
            top, left = (h - side) // 2, (w - side) // 2
        crop = img[:, top : top + side, left : left + side].unsqueeze(0)
        out.append(
            F.interpolate(
                crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )[0]
        )
    x = torch.stack(out).clamp(0.0, 1.0)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
