"""Each model at a size it accepts, under its own name (issue 26, items 1 and 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tl_experiments.errors import UserError
from tl_experiments.models.backbone import ModelSpec, build_backbone
from tl_experiments.train import run


def test_an_arch_override_brings_its_own_name_and_size(make_cfg) -> None:
    default = make_cfg(tiny=False)
    assert (default.model.name, default.model.img_size) == ("efficientnet_lite0", 64)
    vit = make_cfg("model.arch=vit_tiny_patch16_224", tiny=False)  # timm: fixed 224 px
    assert (vit.model.name, vit.model.img_size) == ("vit_tiny_patch16_224", 224)
    cnn = make_cfg("model=test_resnet", "model.arch=test_vit", tiny=False)
    assert (cnn.model.name, cnn.model.img_size) == ("test_vit", 160)
    chosen = make_cfg("model.arch=resnet18", "model.name=mine", "model.img_size=96", tiny=False)
    assert (chosen.model.name, chosen.model.img_size) == ("mine", 96)


def test_a_fixed_size_model_is_built_for_the_size_asked() -> None:
    model, _ = build_backbone(ModelSpec("test_vit", img_size=32), 3)  # timm's own: 160 only
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_a_size_the_model_cannot_take_is_one_sentence() -> None:
    with pytest.raises(UserError) as e:
        build_backbone(ModelSpec("test_vit", img_size=8), 3)  # below its 16 px patches
    message = str(e.value)
    assert message.startswith("model.img_size=8 does not fit test_vit (")
    assert "sizes it takes include 32, 64 and 160 px" in message and message.count(". ") == 0


def test_the_summary_and_metrics_name_the_arch_when_only_it_is_overridden(make_cfg, capsys) -> None:
    cfg = make_cfg(
        "model.arch=test_resnet",
        "model.weights=none",
        "model.img_size=32",
        "trainer=debug",
        "data.samples_per_class=5",
        "analysis.enabled=false",
        "logger=csv",
        tiny=False,
    )
    run(cfg)
    assert "Model: test_resnet (test_resnet)" in capsys.readouterr().out
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert (metrics["model"], metrics["arch"], metrics["img_size"]) == (
        "test_resnet",
        "test_resnet",
        32,
    )
