"""Optuna search with its study in a database (experiment=search_lr): two processes work on
one study, and a search run again continues the study's trials. The objective is cheap
(tests/optuna_objective.py): the runs themselves are tested in test_sweeps.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT


def _search(tmp_path: Path, seed: int, n_trials: int) -> subprocess.Popen:
    args = [
        "-m",
        "experiment=search_lr",
        "strategy=partial_ft",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.sampler.seed={seed}",  # each process its own draws
        f"hydra.sweep.dir={tmp_path / 'search'}",
    ]
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "optuna_objective.py"), *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]


def test_two_processes_share_one_study_and_a_rerun_continues_it(tmp_path: Path) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    first, second = _search(tmp_path, seed=0, n_trials=3), _search(tmp_path, seed=1, n_trials=3)
    _finish(first)
    _finish(second)
    db = tmp_path / "search" / "optuna.db"
    study = optuna.load_study(study_name="search_lr_partial_ft", storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(6))  # every trial once, 3 + 3
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert len({t.params["strategy.lr"] for t in trials}) == 6  # no trial repeated another
    assert trials[0].distributions == {  # search_lr.yaml's params, as Optuna 5 stores them
        "strategy.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "strategy.trainable": CategoricalDistribution(
            ["head", "from:6", "from:4", "from:2", "all"]
        ),
    }
    assert (tmp_path / "search" / "optimization_results.yaml").is_file()

    _finish(_search(tmp_path, seed=2, n_trials=2))  # the same command again: 2 more trials
    numbers = sorted(t.number for t in study.get_trials(deepcopy=False))
    assert numbers == list(range(8))
