"""Shared fixtures: the real Hydra config, composed and shrunk (no mocks).

The suite runs on both cores (``bash scripts/test.sh``: pytest-xdist, ``-n auto``) and
should stay under 5 minutes on a 2-core machine, ``slow`` tests included. A new test that
trains keeps it there by asking for as little as it checks:

- **In-process first.** ``make_cfg(...)`` plus ``tl_experiments.train.run(cfg)`` trains a
  tiny run (``TINY``: ``test_resnet`` at 32 px, 5 images per class, 3 batches of one
  epoch) in about a second. A subprocess (``run_train``) pays Python, torch and Lightning
  imports first (about 7 s of CPU): use one only for what a user's command does that a
  call cannot show (exit codes, what is printed, Hydra's run and sweep folders).
- **Analysis off.** ``TINY`` turns the after-test analysis off (it costs more than the
  tiny run itself). A test that checks analysis fields adds ``ANALYSIS`` (it comes later,
  so it wins) and narrows it (``analysis.shifts=false``, ``analysis.photos=0``, ...).
- **One run, many tests.** A configuration several tests read is run once per session by
  ``trained_run(name)`` (a session fixture): add the arguments to ``RUNS`` under a name and
  let each test assert on the folder. It runs once even across xdist workers (a file lock
  in the session's shared temp folder); each test reads, never writes, the folder (copy it
  first, as ``test_export_of_a_sweep_picks_its_best_run`` does, to change it).
- **Few epochs, few batches.** ``trainer.max_epochs`` 1 or 2 unless the test is about
  epochs; a sweep of 2 jobs rather than 4 unless the number is what is checked.
- **Slow ones start first, on every core.** Tests marked ``slow`` are dealt to the workers
  first (``pytest_collection_modifyitems``), so the last minute is spent on quick tests on
  both cores, not on one long run on one. Mark a test that trains in a subprocess ``slow``.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tl_experiments.commands.resolvers import register_resolvers

register_resolvers()
ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small and fast: tiny timm model, 32 px, 5 images per class, a few batches, no analysis.
TINY = [
    "model=test_resnet",
    "trainer=debug",
    "data.samples_per_class=5",
    "data.batch_size=16",
    "analysis.enabled=false",
]
# For tests that check the analysis after test: put it after TINY (the later value wins).
ANALYSIS = "analysis.enabled=true"

# train.py runs shared by every test of the session (``trained_run``), by name.
RUNS: dict[str, list[str]] = {
    # What the run folder holds (test_train_e2e.py) and from a trained run to use
    # (test_eval_predict_export.py): two short epochs, small untruncated val and test
    # splits (100 images each), so eval sees exactly the images the run was tested on.
    "partial_ft": [
        *TINY,
        "strategy=partial_ft",
        "strategy.lr=0.01",
        "trainer.max_epochs=2",
        "data.val_fraction=0.02",
        "data.test_fraction=0.02",
        "trainer.limit_val_batches=null",
        "trainer.limit_test_batches=null",
    ],
}


@pytest.fixture(autouse=True)
def _weights_cache(tmp_path_factory, monkeypatch):
    # Converted weights are cached once per test session, never in the user's home.
    monkeypatch.setenv("TL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "weights-cache"))


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/train.yaml`` with the tiny overrides plus ``extra``."""

    def _make(*extra: str, tiny: bool = True) -> DictConfig:
        overrides = (TINY if tiny else []) + [f"paths.output_dir={tmp_path / 'run'}", *extra]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="train", overrides=overrides)

    return _make


def run_train(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the root ``train.py`` in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class TrainedRun:
    """A finished ``python train.py`` of ``RUNS[name]``: its folder and what it printed."""

    dir: Path
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Callable[[str], TrainedRun]:
    """``trained_run(name)``: ``RUNS[name]`` run by ``train.py`` once per session.

    The first worker to ask runs it under a file lock; the others wait for it and read
    the same folder (xdist gives every worker its own session, but one shared temp root).
    A failed run is reported, not raised, so each test shows its own assertion.
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the root every worker's temp folder sits in
    root = shared / "trained-runs"
    root.mkdir(exist_ok=True)

    def get(name: str) -> TrainedRun:
        args, run = RUNS[name], root / name
        with open(root / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            done = root / f"{name}.json"
            if not done.exists():
                proc = run_train([*args, f"hydra.run.dir={run}"], cwd=root, timeout=600)
                result = {"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr}
                done.write_text(json.dumps(result))
        result = json.loads(done.read_text())
        return TrainedRun(run, args, result["rc"], result["out"], result["err"])

    return get


def pytest_collection_modifyitems(config, items) -> None:
    """Order for xdist, which first splits the list into one consecutive share per worker
    (``--dist worksteal``; idle workers then steal from busy ones): each share starts with
    its part of the ``slow`` tests, dealt round-robin. ``gpu``-marked tests need CUDA:
    skipped, with the reason, on a machine without it."""
    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    slow = [item for item in items if "slow" in item.keywords]
    quick = [item for item in items if "slow" not in item.keywords]
    share = -(-len(quick) // workers)  # ceil
    items[:] = [
        item
        for w in range(workers)
        for item in (*slow[w::workers], *quick[w * share : (w + 1) * share])
    ]
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (run: bash scripts/gpu_check.sh)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config) -> None:
    """One torch thread per xdist worker: two workers with two threads each on two cores
    spend their time waiting on each other. Subprocesses inherit it (OMP_NUM_THREADS)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and int(workers) > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)
