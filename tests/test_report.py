"""The sweep report: exact aggregates, labels, failed runs, best run, files and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tl_experiments.commands.compare import main
from tl_experiments.report import NoRunsError, find_runs, mean_ci95, overfitting_label, write_report

# t_{0.975, 2}: the 95% two-sided Student-t quantile for 3 seeds (from a t table).
T_975_DF2 = 4.302652729749462
SECONDS_FT = [60.0, 62.0, 64.0]  # the full_ft runs of the sweep fixture
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ERROR = "CUDA out of memory at batch size 256; lower data.batch_size."


def make_run(
    folder: Path, seed: int, strategy: str, extra: tuple[str, ...] = (), **metrics: object
) -> Path:
    """A run folder as train.py writes it (docs/run_folder.md), with made-up numbers;
    ``extra`` are more overrides (e.g. ``strategy.lr=0.01``)."""
    (folder / ".hydra").mkdir(parents=True)
    overrides = [f"strategy={strategy}", f"seed={seed}", *extra]
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    base = {"status": "ok", "model": "efficientnet_lite0", "data": "mnist_sample"}
    base |= {"samples_per_class": 50, "img_size": 64, "num_classes": 10, "train_size": 500}
    base |= {"seed": seed, "strategy": strategy, "total_params": 3_400_000, "epochs": 3}
    base |= metrics
    val = base["best_val_acc"]
    base["history"] = [{"epoch": e, "val_acc": val - 0.1 * (2 - e)} for e in range(3)]
    (folder / "metrics.json").write_text(json.dumps(base))
    return folder


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 strategies x 3 seeds plus one failed run, in Hydra's numbered job folders."""
    root = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    table = {  # strategy: (trainable, seconds, best_val_acc, test_acc, gap) per seed
        "feature_extraction": (12_810, [10, 12, 14], [0.80, 0.82, 0.84], [0.79, 0.80, 0.81]),
        "full_ft": (3_384_010, [60, 62, 64], [0.90, 0.92, 0.94], [0.88, 0.90, 0.92]),
    }
    gaps = {"feature_extraction": [0.02, 0.03, 0.04], "full_ft": [0.10, 0.12, 0.14]}
    job = 0
    for strategy, (params, secs, vals, tests) in table.items():
        for seed in range(3):
            make_run(
                root / str(job),
                seed,
                strategy,
                trainable_params=params,
                train_seconds=secs[seed],
                best_val_acc=vals[seed],
                test_acc=tests[seed],
                train_val_gap=gaps[strategy][seed],
            )
            job += 1
    # full_ft seed 2 (job 5) is the best run overall; give it a checkpoint.
    (root / "5" / "checkpoints").mkdir()
    (root / "5" / "checkpoints" / "best.ckpt").write_bytes(b"ckpt")
    failed = root / "6"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "overrides.yaml").write_text("- strategy=partial_ft\n- seed=0\n")
    error = {"status": "failed", "error": ERROR, "type": "OutOfMemoryError"}
    (failed / "error.json").write_text(json.dumps(error))
    return root


def test_mean_ci95_matches_student_t() -> None:
    mean, half = mean_ci95([1.0, 2.0, 3.0])  # sd = 1
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(T_975_DF2 / math.sqrt(3))
    mean, half = mean_ci95([0.7])
    assert mean == pytest.approx(0.7) and math.isnan(half)


@pytest.mark.parametrize(
    ("gap", "label"),
    [
        (-0.01, "low"),
        (0.049, "low"),
        (0.05, "moderate"),
        (0.149, "moderate"),
        (0.15, "high"),
        (0.4, "high"),
    ],
)
def test_overfitting_label_thresholds(gap: float, label: str) -> None:
    assert overfitting_label(gap) == label


def test_summary_has_exact_means_and_intervals(sweep: Path) -> None:
    report = write_report(sweep)
    summary = report.summary.set_index("strategy")
    assert list(report.summary["strategy"]) == ["full_ft", "feature_extraction"]  # best first
    fe, ft = summary.loc["feature_extraction"], summary.loc["full_ft"]
    assert fe["n"] == 3 and ft["n"] == 3
    assert fe["best_val_acc_mean"] == pytest.approx(0.82)
    assert fe["best_val_acc_ci95"] == pytest.approx(T_975_DF2 * 0.02 / math.sqrt(3))
    assert fe["test_acc_mean"] == pytest.approx(0.80)
    assert fe["test_acc_ci95"] == pytest.approx(T_975_DF2 * 0.01 / math.sqrt(3))
    assert ft["test_acc_mean"] == pytest.approx(0.90)
    # Times: geometric mean, interval of the mean log taken back with exp (never below 0).
    logs = np.log(SECONDS_FT)
    half = T_975_DF2 * logs.std(ddof=1) / math.sqrt(3)
    assert ft["train_seconds_mean"] == pytest.approx(math.exp(logs.mean()))
    assert ft["train_seconds_low"] == pytest.approx(math.exp(logs.mean() - half))
    assert ft["train_seconds_high"] == pytest.approx(math.exp(logs.mean() + half))
    assert 0 < ft["train_seconds_low"] < ft["train_seconds_mean"] < ft["train_seconds_high"]
    assert fe["train_val_gap_mean"] == pytest.approx(0.03) and fe["overfitting"] == "low"
    assert ft["train_val_gap_mean"] == pytest.approx(0.12) and ft["overfitting"] == "moderate"
    assert fe["trainable_params"] == 12_810


def test_csv_has_one_row_per_group(sweep: Path) -> None:
    write_report(sweep)
    csv = pd.read_csv(sweep / "report.csv").set_index("strategy")
    assert len(csv) == 2
    assert csv.loc["full_ft", "best_val_acc_mean"] == pytest.approx(0.92)
    assert csv.loc["full_ft", "best_val_acc_ci95"] == pytest.approx(T_975_DF2 * 0.02 / 3**0.5)


def test_markdown_table_failed_runs_and_best_run(sweep: Path) -> None:
    text = write_report(sweep).markdown
    assert (sweep / "report.md").read_text() == text
    # Accuracies in percent, mean ± t-interval: 82.0 ± 5.0 for feature extraction val; its
    # times 10, 12, 14 s as the geometric mean 11.9 s with its interval 7.8-18 s.
    assert (
        "| feature_extraction | 12.8K | 11.9 (7.8–18) | 82.0 ± 5.0 | 80.0 ± 2.5 | -10.0 ± 2.5 "
        "| worse | 3.0 | low | 3 |" in text
    )
    assert "| full_ft | 3.38M |" in text
    failed = text.split("## Failed runs")[1]
    assert "`6`" in failed and ERROR.split(";")[0] in failed and "OutOfMemoryError" in failed
    assert "strategy=partial_ft seed=0" in failed
    best = text.split("## Best run")[1].split("##")[0]
    assert "**full_ft**" in best and "best run: `5`" in best
    assert str((sweep / "5" / "checkpoints" / "best.ckpt").resolve()) in best
    assert "strategy=full_ft seed=2" in best


def test_single_seed_shows_no_interval(tmp_path: Path) -> None:
    make_run(
        tmp_path / "0",
        0,
        "scratch",
        trainable_params=10,
        train_seconds=5.0,
        best_val_acc=0.5,
        test_acc=0.4,
        train_val_gap=0.3,
    )
    report = write_report(tmp_path)
    assert (
        "| scratch | 10 | 5.0 | 50.0 | 40.0 | – | best on validation | 30.0 | high | 1 |"
        in report.markdown
    )
    assert "No finished" not in report.markdown and "None." in report.markdown


def test_pngs_are_written_and_valid(sweep: Path) -> None:
    files = {f.name for f in write_report(sweep).files}
    expected = {"trainable_params.png", "accuracy_vs_time.png", "learning_curves.png"}
    assert expected <= files
    assert "data_efficiency.png" not in files  # samples_per_class is the same everywhere
    for name in expected:
        data = (sweep / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_data_efficiency_plot_when_samples_per_class_varies(tmp_path: Path) -> None:
    for job, (spc, acc) in enumerate([(10, 0.6), (50, 0.8), (None, 0.9)]):
        make_run(
            tmp_path / str(job),
            0,
            "partial_ft",
            samples_per_class=spc,
            train_size=10 * (spc or 300),
            trainable_params=100,
            train_seconds=1.0,
            best_val_acc=acc,
            test_acc=acc,
            train_val_gap=0.0,
        )
    report = write_report(tmp_path, tmp_path / "out")
    assert (tmp_path / "out" / "data_efficiency.png").read_bytes().startswith(PNG_MAGIC)
    assert len(report.summary) == 3 and "| all |" in report.markdown  # null = all images
    assert sorted(report.summary["train_per_class"]) == [10, 50, 300]


def test_runs_are_found_recursively(sweep: Path) -> None:
    runs = find_runs(sweep.parent.parent)
    assert len(runs) == 7 and sum(not r.ok for r in runs) == 1


def test_main_prints_table_and_returns_zero(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(sweep), "--out", str(sweep / "report")]) == 0
    assert "| full_ft |" in capsys.readouterr().out
    assert (sweep / "report" / "report.md").is_file()


@pytest.mark.parametrize("make_dir", [False, True])
def test_cli_without_runs_exits_nonzero_without_traceback(tmp_path: Path, make_dir: bool) -> None:
    target = tmp_path / "sweep"
    if make_dir:
        target.mkdir()
    with pytest.raises(NoRunsError):
        find_runs(target)
    result = subprocess.run(
        [sys.executable, "-m", "tl_experiments.commands.compare", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2  # a user error, as train.py reports one
    assert str(target) in result.stderr and "Traceback" not in result.stderr
    assert "pass" in result.stderr  # the message names the fix


def test_cli_subprocess_writes_report(sweep: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tl_experiments.commands.compare", str(sweep)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "| feature_extraction |" in result.stdout and "1 failed run(s)" in result.stdout
    assert (sweep / "report.csv").is_file() and (sweep / "report.md").is_file()


def _runs(root: Path, strategy: str, vals, tests, extra: tuple[str, ...] = ()) -> None:
    tag = "_".join([strategy, *extra]).replace("=", "-")
    for seed, (val, test) in enumerate(zip(vals, tests, strict=True)):
        make_run(
            root / f"{tag}_{seed}",
            seed,
            strategy,
            extra,
            trainable_params=1000,
            train_seconds=10.0,
            best_val_acc=val,
            test_acc=test,
            train_val_gap=0.02,
        )


def test_runs_that_differ_in_lr_are_separate_rows_and_the_best_on_val_is_selected(
    tmp_path: Path,
) -> None:
    _runs(tmp_path, "full_ft", [0.80, 0.81, 0.82], [0.95, 0.95, 0.95], ("strategy.lr=0.01",))
    _runs(tmp_path, "full_ft", [0.90, 0.91, 0.92], [0.88, 0.89, 0.90], ("strategy.lr=0.001",))
    _runs(tmp_path, "feature_extraction", [0.85, 0.86, 0.87], [0.84, 0.85, 0.86])
    report = write_report(tmp_path)
    rows = report.summary.set_index(["strategy", "setting"])
    assert len(report.summary) == 3 and rows.loc[("full_ft", "strategy.lr=0.01"), "n"] == 3
    assert rows.loc[("full_ft", "strategy.lr=0.001"), "test_acc_mean"] == pytest.approx(0.89)
    chosen = report.comparison.set_index("strategy")
    # Selected on validation (lr 0.001), although lr 0.01 has the better test accuracy.
    assert chosen.loc["full_ft", "setting"] == "strategy.lr=0.001"
    assert chosen.loc["full_ft", "n_settings"] == 2
    assert "**Tuned on validation**" in report.markdown
    assert "## Every setting tried" in report.markdown
    assert "`strategy.lr=0.01`" in report.markdown.split("## Every setting tried")[1]


def test_identical_strategies_tie_with_no_single_winner(tmp_path: Path) -> None:
    _runs(tmp_path, "partial_ft", [0.9, 0.9, 0.9], [0.88, 0.89, 0.90])
    _runs(tmp_path, "full_ft", [0.9, 0.9, 0.9], [0.88, 0.89, 0.90])
    _runs(tmp_path, "scratch", [0.6, 0.7, 0.8], [0.60, 0.88, 0.91])
    report = write_report(tmp_path)
    verdicts = report.comparison.set_index("strategy")["verdict"]
    assert verdicts["partial_ft"] == verdicts["full_ft"] == "tied best on validation"
    assert verdicts["scratch"] == "not distinguishable"  # -0.093 ± 0.29: covers 0
    best = report.markdown.split("## Best run")[1]
    assert "No single winner: " in best and "full_ft" in best and "partial_ft" in best
    assert "Fixed recipe" in report.markdown


def test_paired_interval_matches_a_hand_computation(tmp_path: Path) -> None:
    """Differences per seed -0.02, -0.03, -0.025: mean -0.025, sd 0.005, t_{0.975,2}."""
    _runs(tmp_path, "full_ft", [0.95, 0.95, 0.95], [0.92, 0.90, 0.94])
    _runs(tmp_path, "lp_ft", [0.90, 0.90, 0.90], [0.90, 0.87, 0.915])
    _runs(tmp_path, "l2sp", [0.90, 0.90, 0.90], [0.95, 0.85, 0.92])  # -0.0 ± wide
    rows = write_report(tmp_path).comparison.set_index("strategy")
    lp = rows.loc["lp_ft"]
    assert lp["diff_mean"] == pytest.approx(-0.025)
    assert lp["diff_ci95"] == pytest.approx(T_975_DF2 * 0.005 / math.sqrt(3))
    assert lp["pairs"] == 3 and lp["verdict"] == "worse"
    assert rows.loc["l2sp", "verdict"] == "not distinguishable"
    assert rows.loc["full_ft", "verdict"] == "best on validation"


def test_report_shows_what_unfreezing_cost(tmp_path: Path) -> None:
    from tl_experiments.report.unfreezing import unfreezing_drops

    history = [
        {"epoch": 0, "val_acc": 0.80, "trainable_stages": 1},
        {"epoch": 1, "val_acc": 0.85, "trainable_stages": 1},
        {"epoch": 2, "val_acc": 0.40, "trainable_stages": 9},  # the collapse
        {"epoch": 3, "val_acc": 0.60, "trainable_stages": 9},
    ]
    assert unfreezing_drops(history) == pytest.approx([0.45])
    run = make_run(
        tmp_path / "0", 0, "lp_ft", trainable_params=1, train_seconds=1.0, best_val_acc=0.85
    )
    metrics = json.loads((run / "metrics.json").read_text()) | {"history": history}
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert "| lp_ft | 1 | 45.0 |" in write_report(tmp_path).markdown


def test_a_setting_only_newer_runs_record_does_not_split_them(tmp_path: Path) -> None:
    """A config key added by a newer version is absent from older runs' metrics.json."""
    _runs(tmp_path, "full_ft", [0.9, 0.9], [0.9, 0.9], ("strategy.lr=0.01",))
    make_run(
        tmp_path / "new",
        2,
        "full_ft",
        ("strategy.lr=0.01", "data.new_key=1"),
        trainable_params=1,
        train_seconds=1.0,
        best_val_acc=0.9,
        test_acc=0.9,
    )
    _runs(tmp_path, "full_ft", [0.8, 0.8, 0.8], [0.8, 0.8, 0.8], ("strategy.lr=0.001",))
    summary = write_report(tmp_path).summary
    assert sorted(summary["setting"]) == ["strategy.lr=0.001", "strategy.lr=0.01"]
    assert sorted(summary["n"]) == [3, 3]
