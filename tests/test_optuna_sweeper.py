"""hydra/sweeper=tl_optuna (src/hydra_plugins/tl_experiments_sweeper/optuna_sweeper.py): the
override grammar as Optuna distributions, and a search through a stand-in launcher that
leaves an Optuna study in SQLite. The real launcher and train.py: test_search.py and
test_sweeps.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from omegaconf import OmegaConf

from hydra_plugins.tl_experiments_sweeper.optuna_sweeper import OptunaSweeper, search_space


def test_the_override_grammar_becomes_optuna_distributions() -> None:
    from optuna.distributions import CategoricalDistribution as Cat
    from optuna.distributions import FloatDistribution, IntDistribution

    overrides = [
        "lr=tag(log, interval(1e-4, 1e-2))",
        "wd=interval(0, 0.1)",
        "width=tag(int, log, interval(8, 64))",
        "depth=range(1, 10, 3)",  # 1, 4, 7: the stop is excluded
        "drop=shuffle(range(0.0, 0.5, 0.25))",
        "trainable=choice(head, 'from:6', 'a,b', 2)",
        "seed=1",
        "+extra=path/to x",
        "seed=2",  # a key's last override wins
    ]
    space = search_space(OverridesParser.create().parse_overrides(overrides))
    assert space.distributions == {
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "wd": FloatDistribution(0.0, 0.1),
        "width": IntDistribution(8, 64, log=True),
        "depth": IntDistribution(1, 7, step=3),
        "drop": FloatDistribution(0.0, 0.25, step=0.25),
        "trainable": Cat(["head", "from:6", "a,b", 2]),
    }
    assert space.fixed == ["seed=2", "+extra=path/to x"]
    job = space.overrides({"lr": 0.001, "trainable": "from:6", "depth": 4})
    assert job == ["seed=2", "+extra=path/to x", "lr=0.001", "trainable=from:6", "depth=4"]
    assert space.overrides({"trainable": "a,b"})[-1] == r"trainable=a\,b"  # not a sweep of two
    fixed_later = search_space(
        OverridesParser.create().parse_overrides(["lr=interval(0,1)", "lr=3"])
    )
    assert fixed_later.distributions == {} and fixed_later.fixed == ["lr=3"]
    with pytest.raises(HydraException, match="depth=tag.*step"):  # Optuna's own words
        search_space(OverridesParser.create().parse_overrides(["depth=tag(log, range(1,10,3))"]))


class _Launcher:
    """Runs each batch at once through ``objective``, in place of Hydra's launcher."""

    def __init__(self, objective) -> None:
        self.objective, self.batches = objective, []

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        self.batches.append([list(job) for job in job_overrides])
        returns = []
        for job in job_overrides:
            ret = JobReturn(overrides=list(job))
            try:
                ret.return_value = self.objective(dict(o.split("=", 1) for o in job))
                ret.status = JobStatus.COMPLETED
            except ValueError as error:  # as Hydra's run_job keeps a job's exception
                ret.return_value, ret.status = error, JobStatus.FAILED
            returns.append(ret)
        return returns


def _objective(params: dict[str, str]) -> float | None:
    if params["trainable"] == "all":
        raise ValueError("no such stage")
    if params["trainable"] == "from:6":
        return None  # what train.py returns for a run that failed
    return -abs(math.log10(float(params["lr"])) + 3)


def _search(
    tmp_path: Path,
    n_trials: int,
    seed: int,
    max_failure_rate: float = 1.0,
    trainable: str = "",
    objective=None,
    direction: str = "maximize",
) -> _Launcher:
    sweeper = OptunaSweeper(
        direction=direction,
        study_name="lr",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        n_trials=n_trials,
        n_jobs=2,
        max_failure_rate=max_failure_rate,
        sampler={"seed": seed},
        params={"lr": "tag(log, interval(1e-4, 1e-2))", "trainable": f"choice({trainable})"},
    )
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweeper.launcher = _Launcher(objective or _objective)
    sweeper.sweep(["seed=3"])
    return sweeper.launcher


def test_a_search_leaves_its_trials_in_an_optuna_study_and_a_rerun_adds_more(tmp_path) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState

    choices = "head, all, 'from:6'"
    launcher = _search(tmp_path, n_trials=5, seed=0, trainable=choices)  # draws all three
    assert [len(b) for b in launcher.batches] == [2, 2, 1]  # n_jobs at a time
    assert all(job[0] == "seed=3" for batch in launcher.batches for job in batch)
    study = optuna.load_study(study_name="lr", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(5))
    for t in trials:
        assert t.distributions == {
            "lr": FloatDistribution(1e-4, 1e-2, log=True),
            "trainable": CategoricalDistribution(["head", "all", "from:6"]),
        }
        ok = t.params["trainable"] == "head"  # the others raised or returned None
        assert t.state == (TrialState.COMPLETE if ok else TrialState.FAIL)
        assert t.value == (-abs(math.log10(t.params["lr"]) + 3) if ok else None)
    assert {t.params["trainable"] for t in trials} == {"head", "all", "from:6"}
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert best.best_params == study.best_trial.params and best.best_value == study.best_value

    _search(tmp_path, n_trials=2, seed=1, trainable=choices)  # two more, numbered on
    assert [t.number for t in study.get_trials()] == list(range(7))


def test_more_failures_than_the_rate_allows_stop_the_search(tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    with pytest.raises(HydraException, match="2 of 2 trials failed.*max_failure_rate=0.5"):
        _search(tmp_path, n_trials=6, seed=0, max_failure_rate=0.5, trainable="all, 'from:6'")
    study = optuna.load_study(study_name="lr", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * 2  # the first batch
    assert not (tmp_path / "optimization_results.yaml").exists()


def test_an_interrupted_batch_leaves_no_trial_running_and_a_study_keeps_its_direction(
    tmp_path, monkeypatch
):
    """Ctrl-C while a batch runs: its trials are FAIL in the study, not RUNNING forever (a
    rerun's sampler would keep away from them). A rerun that asks the other direction of
    the same study is one sentence, not a silently inverted search."""
    import optuna
    from optuna.trial import TrialState

    def interrupted(params):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, n_trials=4, seed=0, trainable="head", objective=interrupted)
    study = optuna.load_study(study_name="lr", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * 2
    # Interrupted between two asks of a batch: the trial already asked is FAIL too.
    ask, asked = optuna.Study.ask, []

    def ask_once(self, *args, **kwargs):
        if asked:
            raise KeyboardInterrupt
        asked.append(1)
        return ask(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "ask", ask_once)
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, n_trials=2, seed=2, trainable="head")
    monkeypatch.undo()
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * 3
    with pytest.raises(HydraException, match="is to maximize, not hydra.sweeper.direction"):
        _search(tmp_path, n_trials=2, seed=1, trainable="head", direction="minimize")
