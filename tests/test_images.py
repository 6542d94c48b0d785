"""Images are read as they look: bit depth, orientation, hidden copies, empty or tiny
classes, and copies across splits (issue 20, defects 4, 5, 9, 11)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import timm
from PIL import Image

from tl_experiments.data import create_datamodule
from tl_experiments.data.checks import check_images
from tl_experiments.data.datamodule import to_pil
from tl_experiments.data.sources import image_folder


def _save(path: Path, value: int = 0, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, size[::-1], dtype=np.uint8)).save(path)
    return path


def test_a_16_bit_png_keeps_its_contrast(tmp_path: Path) -> None:
    values = np.array([[0, 16384], [32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # a real 16-bit file
    pixels = np.asarray(to_pil(tmp_path / "deep.png"))[..., 0]
    # convert("RGB") alone clips everything above 255: [[0, 255], [255, 255]].
    assert pixels.tolist() == [[0, 64], [128, 255]]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (4, 2))
    img.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": how phones store portrait photos
    img.save(tmp_path / "phone.png", exif=exif)
    shown = to_pil(tmp_path / "phone.png")
    assert shown.size == (2, 4)
    assert shown.getpixel((1, 0)) == (255, 0, 0)  # the top-left corner went to the top right


def test_hidden_copies_in_a_class_folder_are_not_images(tmp_path: Path) -> None:
    for i in range(3):
        _save(tmp_path / "cat" / f"{i}.png", i)
        _save(tmp_path / "dog" / f"{i}.png", 10 + i)
    _save(tmp_path / "cat" / ".ipynb_checkpoints" / "0-checkpoint.png", 0)
    _save(tmp_path / "dog" / "._1.png", 11)  # a macOS resource fork
    found = image_folder(tmp_path)
    assert len(found) == 6
    assert not any("." in Path(p).relative_to(tmp_path).parts[1][:1] for p in found.items)


def test_copies_across_splits_are_found_by_content(tmp_path: Path) -> None:
    items = [_save(tmp_path / f"{i}.png", i) for i in range(4)]
    items.append(_save(tmp_path / "renamed_copy_of_1.png", 1))
    splits = {"train": np.array([0, 1, 2]), "test": np.array([3, 4])}
    found = check_images(items, splits, skip_bad=False, decode=to_pil)
    assert found.duplicates == [("test", str(items[4]), "train", str(items[1]))]


def test_a_class_too_small_for_val_and_test_is_reported(tmp_path: Path, caplog) -> None:
    for i in range(8):
        _save(tmp_path / "big" / f"{i}.png", i)
        _save(tmp_path / "other" / f"{i}.png", 100 + i)
    _save(tmp_path / "tiny" / "0.png", 50)
    backbone = timm.create_model("test_resnet", num_classes=3)
    with caplog.at_level(logging.WARNING):
        dm, _ = create_datamodule(
            image_folder(tmp_path), backbone, 32, val_fraction=0.25, test_fraction=0.25
        )
    assert "tiny have no image in the val split (too few images: 1)" in caplog.text
    assert "tiny have no image in the test split" in caplog.text
    assert len(dm.splits["train"]) + len(dm.splits["val"]) + len(dm.splits["test"]) == 17


def test_every_split_is_decoded_before_training(tmp_path: Path) -> None:
    from tl_experiments.errors import UserError

    for s, split in enumerate(("train", "test")):
        for c, name in enumerate(("a", "b")):
            for i in range(4):
                _save(tmp_path / split / name / f"{i}.png", 100 * s + 10 * c + i)
    (tmp_path / "test" / "b" / "bad.png").write_bytes(b"not an image")
    backbone = timm.create_model("test_resnet", num_classes=2)
    with pytest.raises(UserError, match=r"Cannot read image '.*test/b/bad\.png'"):
        create_datamodule(image_folder(tmp_path), backbone, 32, val_fraction=0.25)


def test_an_image_size_the_model_is_not_meant_for_is_said(caplog) -> None:
    import timm

    from tl_experiments.data.transforms import build_transforms, smallest_size

    backbone = timm.create_model("test_resnet", num_classes=3)
    assert smallest_size(backbone)[0] == 32  # its last feature map is 1/32 of the input
    with caplog.at_level("WARNING", logger="tl_experiments.data.transforms"):
        build_transforms(backbone, 32, augment=False)
        assert not caplog.records
        build_transforms(backbone, 17, augment=False)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "model.img_size=17 is below what test_resnet is meant for (at least 32 px" in line
