"""Write an offline image set as an ImageFolder tree (root/<class>/*).

    python scripts/make_image_folder.py lfw_subset data/lfw_subset
    python scripts/make_image_folder.py photos /tmp/photos 5000   # JPEG photos, 256-640 px
    python train.py data=image_folder data.root=data/lfw_subset

A real ImageFolder data set for trying the image_folder source and the advisor offline:
scikit-image's ``lfw_subset`` (100 faces, 100 natural-image patches, 25 px) or crops of
texture photos (``textures``). ``photos`` is a folder the size of a practitioner's, for
throughput and memory measurements (scripts/bench.py, docs/speed.md), not for accuracy:
N random crops of the natural photos that ship in scikit-learn and scikit-image (one class
per source photo), each re-encoded as a JPEG whose sides are drawn from 256-640 px.
"""

from __future__ import annotations

import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from tl_experiments.advisor.calibration import load_calibration_set
from tl_experiments.analysis.photos import load_photos
from tl_experiments.data import to_pil

_PHOTOS: list[np.ndarray] = []


def main(name: str, root: str) -> None:
    image_set = load_calibration_set(name)
    for i, (item, label) in enumerate(zip(image_set.items, image_set.labels, strict=True)):
        folder = Path(root) / image_set.class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        to_pil(item).save(folder / f"{i:05d}.png")
    print(f"Wrote {len(image_set.items)} images in {len(image_set.class_names)} classes to {root}")


def photo(i: int, root: str) -> None:
    """Photo ``i``: a seeded crop (30-100% of the shorter side) of source photo i mod k,
    resized to a random 256-640 x 256-640 px and saved as JPEG (quality 75-95)."""
    rng = np.random.default_rng(i)
    src = _PHOTOS[i % len(_PHOTOS)]
    h, w = src.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    ch, cw = min(h, int(side * rng.uniform(0.75, 1.33))), side
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    img = Image.fromarray(src[y : y + ch, x : x + cw])
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.resize(tuple(int(s) for s in rng.integers(256, 641, size=2)), Image.BILINEAR)
    path = Path(root) / f"photo{i % len(_PHOTOS)}" / f"{i:06d}.jpg"
    img.save(path, quality=int(rng.integers(75, 96)))


def make_photos(root: str, n: int, workers: int = 2) -> None:
    _PHOTOS.extend(load_photos())  # before the pool forks: its workers share them
    for k in range(len(_PHOTOS)):
        (Path(root) / f"photo{k}").mkdir(parents=True, exist_ok=True)
    with Pool(workers) as pool:
        pool.starmap(photo, ((i, root) for i in range(n)), chunksize=64)
    print(f"Wrote {n} JPEG photos in {len(_PHOTOS)} classes to {root}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "photos":
        make_photos(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3:
        main(sys.argv[1], sys.argv[2])
    else:
        sys.exit(
            "usage: python scripts/make_image_folder.py SET ROOT  (SET: lfw_subset, textures)\n"
            "       python scripts/make_image_folder.py photos ROOT N"
        )
