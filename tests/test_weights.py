"""Weights sources: packaged ImageNet weights are real; files load safely; hub fails clearly."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from tl_experiments.errors import UserError
from tl_experiments.models import create_backbone
from tl_experiments.models.backbone import ModelSpec, build_backbone
from tl_experiments.models.weights import load_weights_file, packaged_state_dict

SKLEARN_IMAGES = Path(__import__("sklearn.datasets").datasets.__file__).parent / "images"
# ImageNet-1k class ids: 698 'palace', 985 'daisy'.
PHOTOS = {"china.jpg": 698, "flower.jpg": 985}


def test_packaged_lite0_classifies_real_photos() -> None:
    model = create_backbone("tf_efficientnet_lite0", 1000, "packaged", zero_head=False).eval()
    cfg = resolve_data_config({}, model=model)
    assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)  # timm's config for this model
    tf = create_transform(**cfg)
    for name, label in PHOTOS.items():
        x = tf(Image.open(SKLEARN_IMAGES / name).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            assert model(x).argmax(-1).item() == label, name


def test_packaged_conversion_is_cached(tmp_path: Path) -> None:
    state = packaged_state_dict("tf_efficientnet_lite0")
    cached = Path(os.environ["TL_CACHE_DIR"]) / "tf_efficientnet_lite0.packaged.safetensors"
    assert cached.is_file()
    assert len(state) == 296
    assert set(state) == set(timm.create_model("tf_efficientnet_lite0").state_dict())


def test_new_head_is_sized_from_data_and_backbone_is_pretrained() -> None:
    model = create_backbone("tf_efficientnet_lite0", 3, "packaged")
    state = packaged_state_dict("tf_efficientnet_lite0")
    assert model.get_classifier().out_features == 3
    assert torch.equal(model.conv_stem.weight, state["conv_stem.weight"])
    assert torch.count_nonzero(model.get_classifier().weight) == 0  # zero-initialised head


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file(tmp_path: Path, suffix: str) -> None:
    source = timm.create_model("test_resnet", num_classes=1000)
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    model = create_backbone("test_resnet", 4, "file", str(path))
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)
    assert model.get_classifier().out_features == 4


def _fewer_classes_state(arch: str) -> dict[str, torch.Tensor]:
    # Another class count than the target's 4: timm alone would load such a file non-strictly.
    return timm.create_model(arch, num_classes=7).state_dict()


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(_fewer_classes_state("test_efficientnet"), path)
    with pytest.raises(UserError, match=r"do not fit 'test_resnet': \d+ of its 90 backbone"):
        create_backbone("test_resnet", 4, "file", str(path))


def test_weights_with_one_matching_key_are_refused(tmp_path: Path) -> None:
    state = _fewer_classes_state("test_resnet")
    path = tmp_path / "one.pth"
    torch.save({"conv1.0.weight": state["conv1.0.weight"], "other.weight": torch.ones(3)}, path)
    with pytest.raises(UserError) as e:
        create_backbone("test_resnet", 4, "file", str(path))
    assert "89 of its 90 backbone tensors missing, 1 unknown" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("prefix", ["module.", "model.", "module.backbone."])
def test_weights_saved_from_a_wrapper_load_every_backbone_tensor(
    tmp_path: Path, prefix: str
) -> None:
    source = timm.create_model("test_resnet", num_classes=7)
    path = tmp_path / "ddp.pth"
    torch.save({prefix + k: v for k, v in source.state_dict().items()}, path)
    model, info = build_backbone(ModelSpec("test_resnet", "file", str(path)), 4)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.state_dict().items() if "fc" not in k)
    assert (info.source, info.loaded, info.total) == ("file", 90, 92)  # all but fc's 2
    assert info.describe() == f"file {path}: 90 of 92 tensors loaded (new head)"


def test_a_corrupt_safetensors_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(UserError, match=r"Cannot read weights file '.*w\.safetensors'"):
        create_backbone("test_resnet", 4, "file", str(path))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/tl_pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"w": _RunsCode()}, f)
    with pytest.raises(UserError, match="Refused to load"):
        load_weights_file(path)
    assert not Path("/tmp/tl_pwned").exists()


def test_hub_weights_offline_fail_in_one_sentence(monkeypatch) -> None:
    import tl_experiments.models.backbone as backbone

    monkeypatch.setattr(backbone, "_online", lambda *a, **k: False)
    with pytest.raises(UserError) as e:
        create_backbone("test_resnet", 4, "hub")
    msg = str(e.value)
    assert "no network" in msg and "model.weights=packaged" in msg and "model.weights=none" in msg
    assert "\n" not in msg


def test_unknown_model_and_source() -> None:
    with pytest.raises(UserError, match="Unknown timm model 'resnet_nope'"):
        create_backbone("resnet_nope", 2)
    with pytest.raises(UserError, match="Unknown weights source 'cloud'"):
        create_backbone("test_resnet", 2, "cloud")
