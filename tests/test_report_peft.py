"""The report's cost columns (checkpoint size, time per epoch and step, peak memory) and its
WiSE-FT section (the curve along alpha, the validation pick's paired gain over alpha = 1),
from made-up run folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tl_experiments.report import write_report
from tl_experiments.report.wise_ft import wise_ft_gains

from .test_report import T_975_DF2, make_run

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _curve(seed: int, pick: float) -> dict:
    val = [0.5, 0.6, 0.7, 0.8, 0.9]
    val[ALPHAS.index(pick)] = 0.95
    clean = [0.5, 0.6, 0.7, 0.8, 0.9]
    noise = [0.40, 0.50, 0.60 + 0.01 * seed, 0.30, 0.20]
    return {"alphas": ALPHAS, "val_acc": val, "test_acc": {"clean": clean, "noise": noise},
            "best_alpha": pick}  # fmt: skip


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    for seed in range(3):
        for strategy, ckpt, curve in (
            ("full_ft", 40 * 2**20, _curve(seed, 0.5)),
            ("lora", 2**20, None),
        ):
            make_run(tmp_path / f"{strategy}{seed}", seed, strategy, trainable_params=10,
                     train_seconds=10, best_val_acc=0.9, test_acc=0.9, train_val_gap=0.0,
                     checkpoint_bytes=ckpt, epoch_seconds=2.0 + seed, step_seconds=0.125,
                     peak_memory_mb={"cpu_rss": 1000.0 + seed, "gpu": None},
                     wise_ft=curve)  # fmt: skip
    return tmp_path


def test_cost_columns(sweep: Path) -> None:
    text = write_report(sweep).markdown
    assert "| s/epoch | ms/step | Ckpt (MiB) | Peak mem (MiB) |" in text
    # Seconds per epoch 2, 3, 4: the geometric mean with its log-scale interval, as train time.
    logs = np.log([2.0, 3.0, 4.0])
    half = T_975_DF2 * logs.std(ddof=1) / 3**0.5
    low, high = np.exp(logs.mean() - half), np.exp(logs.mean() + half)
    centre = np.exp(logs.mean())
    assert f"| {centre:.1f} ({low:.2g}–{high:.2g}) | 125 | 40.00 | 1001 |" in text
    assert "| 125 | 1.00 | 1001 |" in text


def test_wise_ft_section(sweep: Path) -> None:
    text = write_report(sweep).markdown
    assert (
        "## WiSE-FT" in text and "| full_ft | 0.5 | 95.0 ± 0.0 | 70.0 ± 0.0 | 61.0 ± 2.5 |" in text
    )
    assert "lora |" not in text.split("## WiSE-FT")[1].split("## Best run")[0]
    gains = wise_ft_gains([_curve(s, 0.5) for s in range(3)])
    assert gains["clean"] == pytest.approx([-0.2] * 3)
    assert gains["noise"] == pytest.approx([0.40, 0.41, 0.42])
    assert "| full_ft | 0.5, 0.5, 0.5 | -20.0 ± 0.0 | 41.0 ± 2.5 |" in text
