"""WiSE-FT: at a = 0 the interpolated backbone is the pretrained one (its features exactly),
at a = 1 the fine-tuned model (its test accuracy exactly); a is picked on validation; the
curve reaches metrics.json and TensorBoard, also for a LoRA run (adapters merged first)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from tl_experiments.analysis.drift import snapshot_weights
from tl_experiments.analysis.wise_ft import ALPHAS, interpolate, plain_ends, wise_ft_curve
from tl_experiments.stages.stage import get_stages
from tl_experiments.strategies.lora import add_lora
from tl_experiments.train import run

from .conftest import ANALYSIS


def _pretrained_and_tuned(lora: bool = False, step: float = 0.1):
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", num_classes=5).eval()
    if lora:
        add_lora(model, 4, 8, 0.0, r".*conv_pwl?|conv_head")
    w0 = snapshot_weights(model)
    with torch.no_grad():  # "fine-tuning": every trainable tensor moves
        for n, p in model.named_parameters():
            p.add_(torch.randn_like(p) * step) if "lora_A" not in n else None
    return model, w0


@pytest.mark.parametrize("lora", [False, True])
def test_alpha_0_is_the_pretrained_backbone_and_1_the_fine_tuned_model(lora: bool) -> None:
    model, w0 = _pretrained_and_tuned(lora)
    start, end = plain_ends(model, w0)
    keep = set(get_stages(end)[-1].param_names)
    ends = (start.state_dict(), end.state_dict())
    x = torch.randn(4, 3, 32, 32)
    pretrained = timm.create_model("test_efficientnet", num_classes=5).eval()
    pretrained.load_state_dict(start.state_dict())
    probe = plain_ends(model, w0)[1]
    with torch.no_grad():
        expected_end = model(x)
        probe.load_state_dict(interpolate(*ends, 0.0, keep))
        assert torch.equal(probe.forward_features(x), pretrained.forward_features(x))
        assert torch.equal(probe.get_classifier().weight, end.get_classifier().weight)
        probe.load_state_dict(interpolate(*ends, 1.0, keep))
        assert torch.allclose(probe(x), expected_end, atol=1e-5)
        probe.load_state_dict(interpolate(*ends, 0.5, keep))
        half = probe.state_dict()["conv_stem.weight"]
        mid = (ends[0]["conv_stem.weight"] + ends[1]["conv_stem.weight"]) / 2
        assert torch.allclose(half, mid) and not torch.equal(half, ends[1]["conv_stem.weight"])


def test_alpha_is_picked_on_validation() -> None:
    model, w0 = _pretrained_and_tuned(step=1.0)
    start, end = plain_ends(model, w0)
    keep = set(get_stages(end)[-1].param_names)
    end.load_state_dict(interpolate(start.state_dict(), end.state_dict(), 0.0, keep))
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        y_val = end(x).argmax(1)  # the answers of the a = 0 model
    mean, std = (0.5,) * 3, (0.5,) * 3
    curve = wise_ft_curve(model, w0, (x, y_val), (x, y_val), {"mean": mean, "std": std}, ())
    # validation labels are the a = 0 model's answers: a = 0 scores 1, a = 1 less
    assert curve["alphas"] == list(ALPHAS) and curve["val_acc"][0] == 1.0 > curve["val_acc"][-1]
    best = max(range(5), key=lambda i: (curve["val_acc"][i], ALPHAS[i]))
    assert curve["best_alpha"] == ALPHAS[best]
    assert list(curve["test_acc"]) == ["clean"] and len(curve["test_acc"]["clean"]) == 5


def test_a_fine_tuning_run_records_the_curve(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "strategy=full_ft",
        ANALYSIS,
        "analysis.photos=0",
        "analysis.shift_max_images=null",
        "trainer.limit_test_batches=null",
        "data.test_fraction=0.02",
    )
    metrics = run(cfg)
    curve = metrics["wise_ft"]
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["wise_ft"]
    assert saved == curve and curve["test_images"] == metrics["test_size"] == 100
    # a = 1 is the fine-tuned model: its test accuracy, on the whole (clean) test split
    assert curve["test_acc"]["clean"][-1] == pytest.approx(metrics["test_acc"], abs=1e-6)
    assert set(curve["test_acc"]) == {"clean", "noise", "blur", "rotate", "invert"}
    assert [c[-1] for c in curve["test_acc"].values()] == list(metrics["shift_acc"].values())
    events = list((Path(cfg.paths.output_dir) / "tb").glob("events.*"))
    assert any(b"wise_ft/val_acc" in e.read_bytes() for e in events)


def test_no_curve_without_fine_tuning(make_cfg) -> None:
    metrics = run(make_cfg("strategy=feature_extraction", ANALYSIS, "analysis.photos=0"))
    assert metrics["wise_ft"] is None
