"""Forgetting, drift, CKA and domain shifts (tl_experiments.analysis): measures and a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import timm
import torch

from tl_experiments.analysis import (
    BLUR_SIGMA_FRACTION,
    NOISE_STD,
    ROTATION_DEGREES,
    SHIFTS,
    apply_shift,
    imagenet_agreement,
    linear_cka,
    natural_photos,
    shift_accuracy,
    snapshot_weights,
    stage_features,
    weight_drift,
)
from tl_experiments.models import get_stages
from tl_experiments.train import run

from .conftest import ANALYSIS

LITE0 = (0.5, 0.5, 0.5)  # tf_efficientnet_lite0: mean = std = 0.5
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _norm(pixels: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _pixels(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    return x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)


# --- CKA -------------------------------------------------------------------------------------


def test_cka_of_a_representation_with_itself_is_one_and_with_random_near_zero() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 16, generator=g)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-9)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0, abs=1e-9)  # rotation, scale
    assert linear_cka(x, torch.randn(2000, 16, generator=g)) < 0.03


def test_cka_rejects_different_inputs() -> None:
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(torch.randn(5, 3), torch.randn(6, 3))


def test_stage_features_pool_every_stage_but_the_head() -> None:
    model = timm.create_model("test_resnet", num_classes=3)
    stages = get_stages(model)
    feats = stage_features(model, stages, torch.randn(6, 3, 32, 32), batch_size=4)
    assert list(feats) == [s.name for s in stages[:-1]]
    assert all(f.shape[0] == 6 and f.dim() == 2 for f in feats.values())
    assert feats["stage4"].shape[1] == model.num_features  # the pre-logits width


# --- drift -----------------------------------------------------------------------------------


def test_weight_drift_is_zero_until_a_stage_changes() -> None:
    model = timm.create_model("test_resnet", num_classes=3)
    stages = get_stages(model)
    w0 = snapshot_weights(model)
    assert set(weight_drift(stages, w0).values()) == {0.0}
    with torch.no_grad():
        for p in stages[2].params:
            p.mul_(1.1)  # exactly 10% further from the origin
    drift = weight_drift(stages, w0)
    assert drift["stage2"] == pytest.approx(0.1, rel=1e-5)
    assert drift["stem"] == drift["stage1"] == drift["stage3"] == 0.0
    assert "head" not in drift


# --- shifts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mean", "std"), [(IMAGENET_MEAN, IMAGENET_STD), (LITE0, LITE0)])
def test_inversion_twice_is_identity_and_maps_black_to_white(mean, std) -> None:
    x = _norm(torch.rand(2, 3, 16, 16), mean, std)
    once = apply_shift(x, "invert", mean, std)
    assert torch.allclose(_pixels(once, mean, std), 1.0 - _pixels(x, mean, std), atol=1e-5)
    assert torch.allclose(apply_shift(once, "invert", mean, std), x, atol=1e-5)


def test_noise_has_the_documented_std() -> None:
    grey = _norm(torch.full((4, 3, 64, 64), 0.5))
    noisy = _pixels(apply_shift(grey, "noise", IMAGENET_MEAN, IMAGENET_STD))
    assert (noisy - 0.5).std().item() == pytest.approx(NOISE_STD, rel=0.03)
    assert (noisy - 0.5).mean().item() == pytest.approx(0.0, abs=3e-3)


def test_rotation_turns_a_known_pattern_by_the_documented_angle() -> None:
    pixels = torch.zeros(1, 3, 65, 65)
    pixels[..., 31:34, 40:60] = 1.0  # a bar to the right of the centre (32, 32)
    rotated = _pixels(apply_shift(_norm(pixels), "rotate", IMAGENET_MEAN, IMAGENET_STD))[0, 0]
    ys, xs = torch.meshgrid(torch.arange(65.0), torch.arange(65.0), indexing="ij")
    w = rotated.clamp_min(0)
    cy, cx = (w * ys).sum() / w.sum() - 32, (w * xs).sum() / w.sum() - 32
    angle = math.degrees(math.atan2(-cy, cx))  # image y points down: counter-clockwise > 0
    assert angle == pytest.approx(ROTATION_DEGREES, abs=1.0)


def test_blur_removes_high_frequency_energy_and_keeps_the_mean() -> None:
    size = 64
    pixels = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    blurred = _pixels(apply_shift(_norm(pixels), "blur", IMAGENET_MEAN, IMAGENET_STD))

    def high_freq(img: torch.Tensor) -> float:  # energy above a quarter of the band
        spec = torch.fft.fftshift(torch.fft.fft2(img - img.mean()), dim=(-2, -1)).abs() ** 2
        ys, xs = torch.meshgrid(
            torch.arange(size) - size // 2, torch.arange(size) - size // 2, indexing="ij"
        )
        return float(spec[..., (ys**2 + xs**2) > (size // 4) ** 2].sum())

    assert high_freq(blurred) < 0.05 * high_freq(pixels)
    assert blurred.mean().item() == pytest.approx(pixels.mean().item(), abs=0.02)
    assert BLUR_SIGMA_FRACTION * size == pytest.approx(1.28)


def test_shift_accuracy_reports_clean_and_every_shift() -> None:
    model = timm.create_model("test_resnet", num_classes=3)
    images, labels = torch.randn(10, 3, 32, 32), torch.randint(0, 3, (10,))
    acc = shift_accuracy(model, images, labels, IMAGENET_MEAN, IMAGENET_STD, batch_size=4)
    assert list(acc) == ["clean", *SHIFTS]
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    preds = model.eval()(images).argmax(1)
    assert acc["clean"] == pytest.approx(float((preds == labels).float().mean()))


# --- ImageNet-head agreement -----------------------------------------------------------------


def test_natural_photos_and_head_agreement() -> None:
    photos = natural_photos(6, 32, IMAGENET_MEAN, IMAGENET_STD)
    assert photos.shape == (6, 3, 32, 32)
    assert not torch.allclose(photos[2], photos[3])  # crops differ
    original = timm.create_model("test_resnet", num_classes=1000)
    finetuned = timm.create_model("test_resnet", num_classes=3)
    finetuned.load_state_dict(
        {k: v for k, v in original.state_dict().items() if not k.startswith("fc.")}, strict=False
    )
    assert imagenet_agreement(finetuned, original, photos) == 1.0  # same features
    with torch.no_grad():
        for p in get_stages(finetuned)[4].params:
            p.add_(torch.randn_like(p) * 5 * p.std())
    assert imagenet_agreement(finetuned, original, photos) < 1.0


# --- a run -----------------------------------------------------------------------------------


def test_tiny_run_writes_analysis_fields(make_cfg, caplog) -> None:
    cfg = make_cfg(
        "strategy=partial_ft", ANALYSIS, "analysis.shift_max_images=64", "analysis.max_images=64"
    )
    with caplog.at_level("INFO", logger="tl_experiments.analysis.run"):
        run(cfg)
    said = [r.getMessage() for r in caplog.records if r.name == "tl_experiments.analysis.run"]
    assert [line.split(" ")[1] for line in said] == ["CKA", "accuracy", "WiSE-FT,"]  # a line a part
    assert said[1].startswith("Analysis: accuracy on 4 shifted copies of 32 test images")
    metrics = json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())
    stages = ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert list(metrics["drift"]) == stages and list(metrics["cka"]) == stages
    # partial_ft: stem and stage1 frozen (drift exactly 0, CKA 1), the rest trained.
    assert metrics["drift"]["stem"] == metrics["drift"]["stage1"] == 0.0
    assert metrics["cka"]["stage1"] == pytest.approx(1.0, abs=1e-6)
    assert all(metrics["drift"][s] > 0 for s in stages[2:])
    assert metrics["imagenet_agreement"] is None  # test_resnet starts from random weights
    assert set(metrics["shift_acc"]) == {"clean", *SHIFTS}
    assert metrics["analysis_seconds"] >= 0
    tags = _scalar_tags(Path(cfg.paths.output_dir, "tb"))
    assert {"drift/stage2", "cka/stage2", "shift/noise", "shift/clean"} <= tags, sorted(tags)


def _scalar_tags(tb: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in tb.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags().get("scalars", []))
    return tags


def test_frozen_backbone_does_not_drift(make_cfg) -> None:
    cfg = make_cfg(
        "strategy=feature_extraction", ANALYSIS, "analysis.shifts=false", "analysis.max_images=32"
    )
    metrics = run(cfg)
    assert set(metrics["drift"].values()) == {0.0}
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in metrics["cka"].values())
    assert metrics["shift_acc"] is None


# --- report ----------------------------------------------------------------------------------


def test_report_shows_analysis_tables_only_when_present(tmp_path: Path) -> None:
    from tl_experiments.report import Run
    from tl_experiments.report.analysis_tables import render_analysis

    def metrics(strategy: str, seed: int, acc: float) -> dict:
        return {
            "status": "ok",
            "strategy": strategy,
            "model": "m",
            "seed": seed,
            "test_acc": acc,
            "imagenet_agreement": 0.5,
            "drift": {"stem": 0.0},
            "cka": {"stem": 1.0},
            "shift_acc": {"clean": acc, "noise": acc / 2},
        }

    runs = [
        Run(tmp_path / f"{s}{i}", metrics=metrics(s, i, 0.8 + 0.1 * i))
        for s in ("full_ft", "lp_ft")
        for i in range(2)
    ]
    text = render_analysis(runs)
    assert "| Approach | imagenet agreement | stem |" in text
    assert "| full_ft | 85.0 ± 63.5 | 85.0 ± 63.5 | 42.5 ± 31.8 |" in text  # mean ± t-interval
    assert "| lp_ft | 50.0 ± 0.0 | 0.000 |" in text
    assert render_analysis([Run(tmp_path, metrics={"status": "ok", "strategy": "x"})]) == ""


def test_trainer_batch_limits_cap_the_analysis_images() -> None:
    import pytorch_lightning as pl

    from tl_experiments.analysis.run import AnalysisOptions, _capped

    trainer = pl.Trainer(limit_val_batches=3, limit_test_batches=2, logger=False)
    capped = _capped(AnalysisOptions(shift_max_images=None), trainer, batch_size=16)
    assert (capped.max_images, capped.shift_max_images, capped.photos) == (48, 32, 32)
    full = _capped(AnalysisOptions(), pl.Trainer(logger=False), batch_size=16)
    assert full == AnalysisOptions()  # fractions (the default 1.0) keep the configured counts
