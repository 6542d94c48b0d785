"""tl-compare's studies (report/studies.py): two sweeps paired, WiSE-FT's paired gains, the
advisor's hit rate; exact numbers from made-up run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tl_experiments.commands.compare import main

from .test_report import T_975_DF2, make_run


def _sweep(root: Path, tests: dict[str, list[float]], **metrics: object) -> Path:
    for strategy, accs in tests.items():
        for seed, acc in enumerate(accs):
            make_run(
                root / f"{strategy}_{seed}",
                seed,
                strategy,
                trainable_params=1000,
                train_seconds=10.0,
                best_val_acc=acc,
                test_acc=acc,
                train_val_gap=0.0,
                **metrics,
            )
    return root


def test_two_sweeps_are_paired_by_strategy_and_seed(tmp_path: Path, capsys) -> None:
    a = _sweep(tmp_path / "a", {"full_ft": [0.80, 0.81, 0.82]})
    b = _sweep(tmp_path / "b", {"full_ft": [0.85, 0.87, 0.86]})
    assert main(["paired", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    half = T_975_DF2 * 0.01 / math.sqrt(3)  # differences 5, 6, 4 points: sd 1 point
    assert f"| full_ft | 81.0 | 86.0 | +5.0 ± {100 * half:.1f} | 30 | 30 | 3.0 | 3.0 | 3 |" in out
    assert "Training seconds, all jobs: A 30, B 30 (0% less)" in out


def test_wise_ft_gains_are_paired_over_seeds(tmp_path: Path, capsys) -> None:
    for seed, gain in enumerate([0.01, 0.02, 0.03]):
        curve = {"alphas": [0.0, 0.5, 1.0], "test_acc": {"noise": [0.5, 0.7 + gain, 0.7]}}
        make_run(tmp_path / f"run{seed}", seed, "full_ft", best_val_acc=0.9, wise_ft=curve)
    assert main(["wise-ft", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert "full_ft (3 seeds): alpha minus 1, points" in out
    assert "| 0 | -20.0 ± 0.0 |" in out and f"| 0.5 | +2.0 ± {100 * half:.1f} |" in out


def test_the_advisors_hits_are_counted(tmp_path: Path, capsys) -> None:
    sweep = _sweep(tmp_path / "digits", {"full_ft": [0.9, 0.92, 0.94], "scratch": [0.5] * 3})
    judged = {"size": {"n_train": 500}, "budget": {"value": "limited"}}
    judged["similarity"] = {"value": "high", "ce_reduction": 0.5}
    advice = {"strategy": "full_ft", "judgements": judged, "rule": {"number": 3}}
    (sweep / "advice.json").write_text(json.dumps(advice))
    _sweep(tmp_path / "no_advice", {"full_ft": [0.9] * 3})  # skipped: nothing predicted
    assert main(["advisor-hits", str(sweep), str(tmp_path / "no_advice")]) == 0
    out = capsys.readouterr().out
    assert "| digits | 500 | high (+0.50) | limited | 3 | full_ft | full_ft (92.0) |" in out
    assert out.rstrip().endswith("Hit rate: 1 of 1 datasets judged (1 swept).")
