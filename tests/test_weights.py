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


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(UserError, match="do not fit 'test_resnet'"):
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
