"""Intervals that cannot separate anything are said to be so, never shown as certainty."""

from __future__ import annotations

from pathlib import Path

import pytest

from tl_experiments.report import write_report
from tl_experiments.report.caveats import image_resolution
from tl_experiments.report.markdown import format_mean_ci
from tl_experiments.report.table import seed_interval

from .test_report import make_run

SIZES = {"val_size": 5, "test_size": 13}


def _two_seed_sweep(root: Path) -> Path:
    """The sweep of the issue: 2 seeds, 5 validation and 13 test images; partial_ft trails
    full_ft by the same 1 test image (7.7 points) in both seeds."""
    runs = {  # strategy: (best_val_acc, test_acc) per seed
        "full_ft": ([0.6, 1.0], [11 / 13, 12 / 13]),
        "partial_ft": ([0.4, 0.4], [10 / 13, 11 / 13]),
    }
    for strategy, (vals, tests) in runs.items():
        for seed in (0, 1):
            make_run(
                root / f"{strategy}-{seed}",
                seed,
                strategy,
                trainable_params=1000,
                train_seconds=10.0 + seed,
                best_val_acc=vals[seed],
                test_acc=tests[seed],
                train_val_gap=0.0,
                **SIZES,
            )
    return root


def test_few_seeds_small_splits_and_equal_values_are_said(tmp_path: Path) -> None:
    report = write_report(_two_seed_sweep(tmp_path / "sweep"), plots=False).markdown
    # 0.8 ± 2.54 from two seeds: clipped to what an accuracy can be.
    assert "± 254" not in report and "80.0 (0.0–100.0)" in report
    # The same difference in both seeds: no zero-width interval, no "worse".
    row = next(line for line in report.splitlines() if line.startswith("| partial_ft"))
    assert "-7.7" in row and "± 0.0" not in row and "too few seeds" in row and "worse" not in row
    cautions = [line for line in report.splitlines() if line.startswith("- **Caution**")]
    assert any("only 2 seeds" in c and "seed=0,1,2" in c for c in cautions)
    assert any("test split has 13 images" in c and "7.7 points" in c for c in cautions)
    assert any(
        c.startswith("- **Caution**: partial_ft (validation, test vs best): the same value")
        for c in cautions
    )


def test_a_sound_sweep_has_no_caution(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for strategy, base in (("full_ft", 0.90), ("feature_extraction", 0.70)):
        for seed in range(3):
            acc = base + 0.01 * seed
            make_run(root / f"{strategy}-{seed}", seed, strategy, trainable_params=1000,
                     train_seconds=10.0, best_val_acc=acc, test_acc=acc - 0.01 * (seed == 1),
                     train_val_gap=0.0, val_size=2000, test_size=2000)  # fmt: skip
    report = write_report(root, plots=False).markdown
    assert "Caution" not in report and "| worse |" in report


def test_interval_helpers() -> None:
    assert seed_interval([0.5, 0.5])[1] != seed_interval([0.5, 0.5])[1]  # NaN: no interval
    assert seed_interval([0.5, 0.5, 0.5]) == (0.5, 0.0)  # 3 equal seeds: a measured zero
    assert format_mean_ci(0.96, 0.49, 100, bounds=(0, 1)) == "96.0 (47.0–100.0)"
    assert format_mean_ci(0.5, 0.1, 100, bounds=(0, 1)) == "50.0 ± 10.0"
    assert image_resolution(1.0, 10) == pytest.approx(0.1)  # never below one image
    assert image_resolution(0.5, 100) == pytest.approx(0.098)


def test_the_console_table_says_it_too(tmp_path: Path, capsys) -> None:
    from tl_experiments.commands.compare import main

    assert main([str(_two_seed_sweep(tmp_path / "sweep"))]) == 0
    assert "**Caution**: only 2 seeds" in capsys.readouterr().out
