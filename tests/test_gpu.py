"""On an NVIDIA GPU (``-m gpu``; skipped elsewhere): a run trains there in bf16 with
channels_last, and parallel jobs take one real GPU each. scripts/gpu_check.sh runs these."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import ANALYSIS, TINY, run_train


@pytest.mark.gpu
def test_a_run_trains_on_the_gpu_in_bf16(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_train(
        [
            *TINY,
            ANALYSIS,  # the analysis on the GPU too
            "trainer=gpu",
            "trainer.max_epochs=2",
            "trainer.precision=bf16-mixed",
            "speed.channels_last=true",
            "strategy=full_ft",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GPU available: True (cuda), used: True" in proc.stdout + proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_acc"] <= 1.0


@pytest.mark.gpu
def test_parallel_jobs_each_take_a_real_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    sweep = tmp_path / "sweep"
    proc = run_train(
        [
            "-m",
            *TINY,
            "trainer=gpu",
            "hydra/launcher=gpu_per_job",
            "hydra.launcher.n_jobs=2",
            "seed=0,1",
            f"gpu_lock_dir={tmp_path / 'locks'}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sweep.rglob("metrics.json")]
    assert sorted(m["gpu_slot"] for m in runs) == [0, 1]  # gpu_per_job=auto on 2+ GPUs
