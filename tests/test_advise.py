"""The measuring advisor: similarity on real offline data, the command, hand overrides, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from tl_experiments.advisor.measure import similarity_class
from tl_experiments.commands.advise import advise, train_command
from tl_experiments.errors import UserError
from tl_experiments.report.advice_check import render_advice_check

from .conftest import CONF

TINY = ["model=test_resnet", "data.samples_per_class=5"]


def _advise_cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="advise", overrides=[*TINY, f"paths.output_dir={tmp_path}", *overrides]
        )


def test_similarity_ranks_natural_faces_above_digits():
    pytest.importorskip("skimage")
    from tl_experiments.advisor.calibration import load_calibration_set, measure_set

    faces = measure_set(load_calibration_set("lfw_subset"), n=200)
    digits = measure_set(load_calibration_set("digits"), n=200)
    assert faces.gain > digits.gain + 0.3
    # The calibrated thresholds put the two sets at opposite ends (docs/advisor.md).
    assert (similarity_class(faces.gain), similarity_class(digits.gain)) == ("high", "low")


def test_command_prints_judgements_rule_and_train_command(tmp_path: Path):
    args = [
        *TINY,
        "similarity=high",
        "budget=limited",
        "priority=speed",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"advice_out={tmp_path / 'advice.json'}",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "tl_experiments.commands.advise", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "size       small     measured: 50 training images, 10 classes" in proc.stdout
    assert "similarity high      by hand: similarity=high" in proc.stdout
    assert "Rule 1: small dataset, high/medium similarity -> feature_extraction" in proc.stdout
    assert lines[-1] == (
        "  python train.py strategy=feature_extraction model=test_resnet data.samples_per_class=5"
    )
    saved = json.loads((tmp_path / "advice.json").read_text())
    assert saved["strategy"] == "feature_extraction"
    assert saved["judgements"]["size"] == {
        "value": "small",
        "source": "measured",
        "n_train": 50,
        "detail": "50 training images, 10 classes (small < 1,000 <= medium <= 10,000 < large)",
    }


def test_hand_overrides_replace_every_judgement(tmp_path: Path, capsys):
    cfg = _advise_cfg(tmp_path, "size=large", "similarity=low", "budget=high")
    advice = advise(cfg)
    assert {k: (j["value"], j["source"]) for k, j in advice["judgements"].items()} == {
        "size": ("large", "by hand"),
        "similarity": ("low", "by hand"),
        "budget": ("high", "by hand"),
        "priority": ("accuracy", "given"),
    }
    assert (advice["strategy"], advice["rule"]["number"]) == ("scratch", 6)
    assert (
        "Rule 6: large dataset, low similarity, high budget -> scratch" in capsys.readouterr().out
    )


def test_budget_is_measured_from_timed_steps(tmp_path: Path):
    advice = advise(_advise_cfg(tmp_path, "similarity=high", "trainer.max_epochs=2"))
    budget = advice["judgements"]["budget"]
    assert budget["source"] == "measured" and budget["value"] == "limited"
    # 50 images in batches of 32 = 2 steps, plus 500 val images = 16 batches, per epoch.
    assert "2 epochs x (2 steps x" in budget["detail"]
    assert budget["estimated_seconds"] >= 2 * 2 * budget["step_seconds"] > 0


@pytest.mark.parametrize(
    "override, message",
    [
        ("similarity=huge", "similarity=huge is not one of high, medium, low"),
        ("priority=cheap", "priority=cheap is not one of speed, accuracy"),
        (
            "budget=limited",
            "needs pretrained weights, but model test_resnet has model.weights=none",
        ),
    ],
)
def test_bad_judgements_are_one_sentence_errors(tmp_path: Path, override: str, message: str):
    with pytest.raises(UserError, match=message):
        advise(_advise_cfg(tmp_path, override))


def test_train_command_repeats_data_model_trainer_overrides_only():
    overrides = [
        "data=image_folder",
        "data.root=/my images",
        "model=resnet50",
        "seed=3",
        "trainer.max_epochs=5",
        "similarity=low",
        "+data.extra=1",
    ]
    assert train_command("partial_ft", overrides) == (
        "python train.py strategy=partial_ft data=image_folder 'data.root=/my images' "
        "model=resnet50 trainer.max_epochs=5 +data.extra=1"
    )


def _comparison(fe_tests: list[float]) -> pd.DataFrame:
    from tl_experiments.report import compare_to_winner, select_settings

    rows = [("full_ft", 0.92, [0.90, 0.91, 0.89]), ("feature_extraction", 0.85, fe_tests)]
    summary = pd.DataFrame(
        [
            {
                "model": "efficientnet_lite0",
                "data": "mnist_sample",
                "samples_per_class": 50,
                "img_size": 64,
                "strategy": s,
                "setting": "",
                "best_val_acc_mean": v,
                "test_acc_mean": sum(t) / 3,
                "test_by_seed": dict(enumerate(t)),
            }
            for s, v, t in rows
        ]
    )
    return compare_to_winner(select_settings(summary))


ADVICE = {
    "strategy": "feature_extraction",
    "data": "mnist_sample",
    "model": "efficientnet_lite0",
    "samples_per_class": 50,
    "img_size": 64,
    "command": "python train.py ...",
    "rule": {"description": "small dataset, high/medium similarity"},
}


def test_report_judges_the_pick_paired_over_seeds():
    worse = render_advice_check(_comparison([0.84, 0.85, 0.83]), ADVICE)
    assert "Measured winner (highest mean val accuracy): **full_ft** (val 92.0%, test 90.0%)" in (
        worse
    )
    assert "Wrong: the pick is worse than the winner (-6.0 ± 0.0 test points, paired)" in worse
    tied = render_advice_check(_comparison([0.95, 0.85, 0.88]), ADVICE)
    assert "Right: the pick is not distinguishable from the winner" in tied
    assert "cannot be checked" in render_advice_check(
        _comparison([0.8] * 3), {**ADVICE, "data": "digits"}
    )


def test_the_advice_prints_the_numbers_its_command_trains_with(tmp_path: Path, capsys):
    # The lesson's advisor says partial_ft at lr 1e-4 for 20-30 epochs; the command it prints
    # trains with conf/strategy/partial_ft.yaml and the trainer's epochs, so those are shown.
    from omegaconf import OmegaConf

    from tl_experiments.advisor.rules import STRATEGIES

    advice = advise(
        _advise_cfg(
            tmp_path,
            "size=small",
            "similarity=low",
            "budget=limited",
            "priority=speed",
            "trainer.max_epochs=3",
        )
    )
    shipped = OmegaConf.load(CONF / "strategy" / "partial_ft.yaml")
    assert advice["strategy"] == "partial_ft" and STRATEGIES["partial_ft"].lr == 1e-4
    assert (advice["lr"], advice["backbone_lr_scale"], advice["epochs"]) == (
        shipped.lr,
        shipped.backbone_lr_scale,
        3,
    )
    out = capsys.readouterr().out
    assert f"lr {shipped.lr:g} for the head, x{shipped.backbone_lr_scale:g} below, 3 epochs" in out
    assert "1e-04" not in out and "0.0001" not in out and "20-30" not in out
