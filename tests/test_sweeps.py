"""Multiruns: a real sweep and its report, failures that do not stop it, resuming,
GPU slots for parallel jobs (a parallel sweep on 2 simulated GPUs: test_gpu_check.py), and
launcher/sweeper configs that compose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from .conftest import CONF, TINY, run_train

QUICK = [
    *TINY,
    "data.samples_per_class=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


def _metrics(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.rglob("metrics.json"))]


@pytest.mark.slow
def test_sweep_report_failures_and_resume(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *QUICK,
        "strategy=feature_extraction,full_ft",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = run_train(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _metrics(sweep)
    assert sorted((m["strategy"], m["seed"]) for m in runs) == [
        ("feature_extraction", 0),
        ("feature_extraction", 1),
        ("full_ft", 0),
        ("full_ft", 1),
    ]
    named = [p.parent.name for p in sweep.rglob("metrics.json")]  # folders named by overrides
    assert any("seed-0" in n and "strategy-full_ft" in n for n in named)
    # Seed-major although strategy came first: every strategy's seed 0 before any seed 1.
    plan = json.loads((sweep / "sweep_plan.json").read_text())["jobs"]
    seeds = [next(o for o in job if o.startswith("seed=")) for job in plan]
    assert seeds == ["seed=0", "seed=0", "seed=1", "seed=1"]
    # Answers as they arrive: progress after each job, a table after each round of seeds.
    out = proc.stdout
    assert [f"[sweep] {k}/4 jobs done" in out for k in (1, 2, 3, 4)] == [True] * 4
    first = out.index("Report after 2 of 4 jobs (1 seed of every setting)")
    assert first < out.index("Report after 4 of 4 jobs (2 seeds of every setting)")
    assert "| full_ft |" in out[first:] and "left" in out
    assert (sweep / "report.md").is_file() and (sweep / "accuracy_vs_time.png").is_file()

    # A bad job fails alone: it leaves error.json, the other job finishes.
    bad = run_train(
        [
            "-m",
            *QUICK,
            "strategy=full_ft",
            "strategy.lr=1e-3,-1",
            "seed=0",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert bad.returncode == 0, bad.stderr[-3000:]
    errors = list(sweep.rglob("error.json"))
    assert len(errors) == 1 and "must be positive" in json.loads(errors[0].read_text())["error"]
    assert "[sweep] 2/2 jobs done, 1 failed; all done" in bad.stdout

    # Re-running the first sweep skips every finished job.
    again = run_train(args, cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout.count("Skipping") == 4
    progress = (sweep / "sweep_progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in progress] == ["reused"] * 4

    from tl_experiments.commands.compare import main

    assert main([str(sweep)]) == 0
    report = (sweep / "report.md").read_text()
    assert "full_ft" in report and "feature_extraction" in report
    assert "must be positive" in report  # the failed job is listed with its error
    for png in ("trainable_params.png", "accuracy_vs_time.png", "learning_curves.png"):
        assert (sweep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Parallel jobs each on their own (simulated) GPU: the sweep of scripts/gpu_check.py --dry
# (tests/test_gpu_check.py) runs 4 jobs on 2 and checks it.


def test_gpu_slots_are_exclusive(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, time; from tl_experiments.run.gpu_slots import claim_gpu; "
        f"print(claim_gpu(2, r'{tmp_path}'), flush=True); time.sleep(3)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    slots = sorted(int(p.stdout.readline()) for p in procs)
    for p in procs:
        p.wait()
    assert slots == [0, 1]


@pytest.mark.parametrize("launcher", ["parallel", "gpu_per_job", "slurm", "submitit_cpu"])
def test_launcher_configs_compose(launcher: str) -> None:
    # SLURM itself cannot run here; this checks the config is valid for the plugin.
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True
        )
    target = cfg.hydra.launcher._target_
    plugin = "joblib" if launcher in ("parallel", "gpu_per_job") else "submitit"
    assert f"hydra_{plugin}_launcher" in target
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_task == 1 and cfg.hydra.launcher.array_parallelism > 0


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_experiment_configs_compose(experiment: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=[f"experiment={experiment}"], return_hydra_config=True
        )
    assert cfg.hydra.sweeper.params
    header = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()
    assert header[0] == "# @package _global_"
    assert any("Command:" in line for line in header[:15])  # the file is also a lab notebook


@pytest.mark.slow
def test_optuna_search_survives_failed_trials(tmp_path: Path) -> None:
    sweep = tmp_path / "search"
    proc = run_train(
        [
            "-m",
            "experiment=search_lr",
            *QUICK,
            "hydra.sweeper.n_trials=4",
            "strategy.trainable=choice(head,'from:9')",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "optimization_results.yaml").is_file()
    jobs = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(jobs) == 4
    for job in jobs:  # 'from:9' does not exist on test_resnet: that trial fails alone
        bad = "from:9" in (job / ".hydra" / "overrides.yaml").read_text()
        assert (job / "error.json").is_file() == bad
        assert (job / "metrics.json").is_file() == (not bad)


@pytest.mark.slow
def test_ddp_inside_a_multirun_does_not_rerun_the_sweep(tmp_path: Path) -> None:
    """2-process DDP (gloo on CPU) in each job of a 2-job sweep: exactly 2 runs, each once."""
    sweep = tmp_path / "sweep"
    proc = run_train(
        [
            "-m",
            "model=test_resnet",
            "data.samples_per_class=3",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1",
            "+trainer.limit_test_batches=1",
            "seed=0,1",
            "analysis.enabled=false",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _metrics(sweep)
    assert sorted(m["seed"] for m in runs) == [0, 1]
    jobs = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(jobs) == 2  # no extra folders from children starting the sweep again


def test_a_worker_process_reuses_its_slot_for_its_next_job(tmp_path: Path) -> None:
    from tl_experiments.run.gpu_slots import claim_gpu, release_all

    try:  # joblib runs many jobs in one worker: job 2 must not wait for job 1's lock
        assert claim_gpu(1, tmp_path, timeout_s=2) == 0
        assert claim_gpu(1, tmp_path, timeout_s=2) == 0
    finally:
        release_all()
