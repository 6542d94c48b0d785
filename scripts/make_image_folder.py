"""Write one of the offline calibration sets as an ImageFolder tree (root/<class>/*.png).

    python scripts/make_image_folder.py lfw_subset data/lfw_subset
    python train.py data=image_folder data.root=data/lfw_subset

A real ImageFolder data set for trying the image_folder source and the advisor offline:
scikit-image's ``lfw_subset`` (100 faces, 100 natural-image patches, 25 px) or crops of
texture photos (``textures``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tl_experiments.advisor.calibration import load_calibration_set
from tl_experiments.data import to_pil


def main(name: str, root: str) -> None:
    image_set = load_calibration_set(name)
    for i, (item, label) in enumerate(zip(image_set.items, image_set.labels, strict=True)):
        folder = Path(root) / image_set.class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        to_pil(item).save(folder / f"{i:05d}.png")
    print(f"Wrote {len(image_set.items)} images in {len(image_set.class_names)} classes to {root}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/make_image_folder.py SET ROOT  (SET: lfw_subset, textures)")
    main(sys.argv[1], sys.argv[2])
