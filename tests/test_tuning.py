"""The tuned comparison: each strategy's grid from its config, searched by successive halving
on validation only, the survivor resumed exactly, the selected setting tested once."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from tl_experiments.errors import UserError
from tl_experiments.tuning import (
    TuningSteps,
    grid,
    rungs,
    search_space,
    successive_halving,
    tuned_run,
)

from .conftest import ANALYSIS

# Validation curves (accuracy per epoch) of three settings over 8 epochs: the third starts
# worst and ends best, the second leads at epoch 2.
CURVES = [
    [0.50, 0.60, 0.70, 0.80, 0.82, 0.83, 0.84, 0.85],
    [0.60, 0.70, 0.75, 0.76, 0.77, 0.78, 0.79, 0.80],
    [0.30, 0.40, 0.50, 0.90, 0.90, 0.90, 0.90, 0.90],
]
PARAMS = grid([("lr", (1e-3, 3e-3, 1e-2))])


def test_grid_and_rungs():
    assert grid([("a", (1, 2)), ("b", ("x",))]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert rungs(8, 2, 3) == [2, 6]
    assert rungs(2, 1, 3) == [1]
    assert rungs(8, 8, 3) == []


def test_halving_keeps_the_best_at_the_rung_and_costs_1_5_runs():
    calls = []

    def train_to(i, n):
        calls.append((i, n))
        return CURVES[i][:n]

    result = successive_halving(PARAMS, 8, 2, 3, train_to)
    assert result.selected == 1  # best at epoch 2 (0.70), not the late bloomer
    assert [c.stopped_at for c in result.candidates] == [2, None, 2]
    assert result.n_stopped == 2
    # Every setting to epoch 2, then the survivor straight on to 8: 3 x 2 + 6 = 12 epochs.
    assert calls == [(0, 2), (1, 2), (2, 2), (1, 8)]
    exhaustive = successive_halving(PARAMS, 8, 2, 3, lambda i, n: CURVES[i][:n], exhaustive=True)
    assert exhaustive.selected == 2 and exhaustive.n_stopped == 0


def test_a_tie_at_the_rung_goes_to_the_larger_step_at_1_5_runs():
    """Optuna's pruner alone promotes a value equal to the best one (both would train to the
    end: 2 runs' epochs); a tie goes to the later setting of the grid (the larger step), and
    the search costs 1.5 runs as a clear rung does (halving.py, TIE)."""
    for later_wins in (True, False):  # the later one is picked on a tie, whatever follows
        curves = [[0.5, 0.7, 0.7, 0.9], [0.6, 0.7, 0.6, 0.8 if later_wins else 0.65]]
        params = grid([("lr", (1e-3, 1e-2))])
        calls = []

        def train_to(i, n, curves=curves, calls=calls):
            calls.append((i, n))
            return curves[i][:n]

        result = successive_halving(params, 4, 2, 2, train_to)
        assert [c.stopped_at for c in result.candidates] == [2, None]
        assert result.selected == 1
        assert calls == [(0, 2), (1, 2), (1, 4)]  # 2 + 2 + 2 epochs = 1.5 runs of 4
        assert result.candidates[1].best_val == max(curves[1])  # the raw accuracy, no TIE


def test_a_rung_compares_the_accuracy_at_its_epoch_not_an_earlier_blip():
    """Scratch on the face folder, seed 1 (docs/results.md): lr 3e-3 blips to 64% at epoch 2
    and is back at chance at the rung (epoch 4); lr 1e-2 is at chance there too and leaves
    it at epoch 8. The rung ties at chance, so the larger step goes on (the best-so-far
    statistic kept the blip and lost 8 validation points)."""
    curves = [
        [0.50, 0.645, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50],
        [0.50, 0.50, 0.50, 0.50, 0.50, 0.474, 0.513, 0.724],
    ]
    result = successive_halving(grid([("lr", (3e-3, 1e-2))]), 8, 4, 2, lambda i, n: curves[i][:n])
    assert [c.stopped_at for c in result.candidates] == [4, None]
    assert result.selected == 1 and result.candidates[1].best_val == 0.724
    # A clear lead at the rung still wins, whatever came before it.
    curves[0][3] = 0.52
    assert (
        successive_halving(
            grid([("lr", (3e-3, 1e-2))]), 8, 4, 2, lambda i, n: curves[i][:n]
        ).selected
        == 0
    )


def test_a_missing_accuracy_at_the_rung_ranks_last_and_none_at_all_is_one_sentence():
    """A setting with no validation accuracy at the rung (NaN) stops there, whatever its
    place in the grid; one setting still goes on (1.5 runs for 2 of 3 stopped, as a clear
    rung). With none at all, or a setting that ended before the rung (early stopping), the
    search says what to change instead of failing inside Optuna."""
    from tl_experiments.errors import UserError

    nan = float("nan")
    curves = [[0.5, 0.6, 0.6, 0.6], [0.5, nan, 0.9, 0.9], [0.5, 0.65, 0.7, 0.7]]
    params = grid([("lr", (1e-3, 3e-3, 1e-2))])
    result = successive_halving(params, 4, 2, 3, lambda i, n: curves[i][:n])
    assert [c.stopped_at for c in result.candidates] == [2, 2, None]
    assert result.selected == 2
    with pytest.raises(UserError, match="check_val_every_n_epoch"):
        successive_halving(params, 4, 2, 3, lambda i, n: [nan] * n)
    with pytest.raises(UserError, match="early_stopping_patience"):
        successive_halving(params, 4, 2, 3, lambda i, n: curves[i][: min(n, 1)])


def test_search_space_comes_from_the_strategy_file(make_cfg):
    assert search_space(make_cfg("strategy=partial_ft")) == (("backbone_lr_scale", (0.3, 1.0)),)
    assert search_space(make_cfg("strategy=feature_extraction")) == (("lr", (3e-3, 1e-2)),)
    cfg = make_cfg("strategy=scratch", "strategy.search.lr=[0.5,0.05]")
    assert search_space(cfg) == (("lr", (0.5, 0.05)),)
    with pytest.raises(UserError, match="strategy.search names 'lrr'"):
        search_space(make_cfg("strategy=scratch", "+strategy.search.lrr=[1]"))


def _fake_steps(val: dict[float, list[float]], test: dict[float, float], log: list):
    """Steps that train nothing: each candidate's curve is ``val[lr]``; ``finish`` reads the
    test accuracy ``test[lr]`` of the parts it is given (the only test of the search)."""

    def assemble(cfg, out, *callbacks):
        stop = [c.epochs for c in callbacks]
        return SimpleNamespace(lr=cfg.strategy.lr, stop=stop[0] if stop else None, out=out)

    def fit(cfg, out, parts, ckpt_path):
        until = parts.stop or cfg.trainer.max_epochs
        log.append(("fit", parts.lr, until, ckpt_path is not None))
        history = [{"val_acc": v, "val_loss": 1 - v} for v in val[parts.lr][:until]]
        return float(until), history

    def finish(cfg, out, parts, seconds, history, extra):
        log.append(("test", parts.lr))
        return {"test_acc": test[parts.lr], "train_seconds": seconds, **extra}

    return TuningSteps(assemble, fit, finish)


def test_selection_never_reads_a_test_accuracy(make_cfg, tmp_path, monkeypatch):
    """The pruned settings have the best test accuracies here; the search must neither test
    them nor pick them: only validation decides, and only the pick is tested."""
    import tl_experiments.tuning.run as tuning_run

    monkeypatch.setattr(tuning_run, "_link_best", lambda parts, out: None)
    cfg = make_cfg(
        "strategy=feature_extraction",
        "strategy.search.lr=[1e-3,3e-3,1e-2]",
        "tune.enabled=true",
        "tune.rung=0.25",
        "tune.reduction_factor=3",
        "trainer.max_epochs=8",
    )
    lrs = [1e-3, 3e-3, 1e-2]
    val = dict(zip(lrs, CURVES, strict=True))
    test = {1e-3: 0.99, 3e-3: 0.10, 1e-2: 0.98}
    log: list = []
    record, parts = tuned_run(cfg, tmp_path / "run", _fake_steps(val, test, log))
    assert parts.lr == 3e-3
    assert record["selected"] == {"lr": 3e-3}
    assert [e for e in log if e[0] == "test"] == [("test", 3e-3)]
    # The survivor resumed from its rung checkpoint (not retrained), the others stopped.
    assert ("fit", 3e-3, 8, True) in log and ("fit", 1e-3, 8, True) not in log
    cands = record["tuning"]["candidates"]
    assert [c["stopped_at"] for c in cands] == [2, None, 2]
    # Each candidate's validation loss, as far as it trained: what scripts/check_selection.py
    # --rules ranks other rung rules on (the search itself ranks on accuracy).
    assert [len(c["val_loss"]) for c in cands] == [2, 8, 2]
    assert cands[1]["val_loss"] == pytest.approx([1 - v for v in CURVES[1]])
    assert all("test" not in json.dumps(c) for c in cands)
    assert record["train_seconds"] == 2 + 8 + 2  # the whole search's cost, not the pick's


@pytest.mark.slow
def test_tuned_run_end_to_end(make_cfg, tmp_path):
    """Real training: successive halving's survivor, resumed from its rung checkpoint, has
    the very validation curve and test accuracy of the same setting trained without a stop
    (the exhaustive grid); the deferred analysis then completes the run's metrics.json."""
    from tl_experiments.train import run

    common = [
        "strategy=scratch",
        "strategy.search.lr=[1e-4,1e-2,1e-1]",  # 1e-4 is last at epoch 1 (seed 0)
        "tune.enabled=true",
        "tune.rung=0.34",  # the first rung at epoch 1
        "tune.reduction_factor=3",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=4",
        "data.samples_per_class=8",
        "model.img_size=32",
        "logger=csv",
        "analysis.photos=0",
        "analysis.wise_ft=false",
        "analysis.shift_max_images=16",
    ]
    halving = make_cfg(
        *common, ANALYSIS, "analysis.defer=true", f"paths.output_dir={tmp_path / 'sh'}"
    )
    exhaustive = make_cfg(
        *common,
        "tune.exhaustive=true",
        "analysis.enabled=false",
        f"paths.output_dir={tmp_path / 'ex'}",
    )
    sh, ex = run(halving), run(exhaustive)
    assert sh["tuning"]["method"] == "successive_halving" and sh["tuning"]["n_stopped"] >= 1
    for survivor in [c for c in sh["tuning"]["candidates"] if c["stopped_at"] is None]:
        same = next(c for c in ex["tuning"]["candidates"] if c["params"] == survivor["params"])
        assert survivor["val_acc"] == same["val_acc"] and len(same["val_acc"]) == 3
    pick = next(c for c in ex["tuning"]["candidates"] if c["params"] == sh["selected"])
    assert math.isclose(sh["test_acc"], pick["reference_test_acc"], abs_tol=1e-6)
    assert (tmp_path / "sh" / "checkpoints" / "best.ckpt").is_file()
    assert not list((tmp_path / "sh" / "candidates").rglob("test_report.csv"))
    assert sh["analysis_pending"] and sh.get("drift") is None
    later = run(OmegaConf.merge(halving, {"analysis": {"defer": False}}))
    on_disk = json.loads((tmp_path / "sh" / "metrics.json").read_text())
    assert "analysis_pending" not in on_disk and on_disk["drift"] and later["drift"]
    assert on_disk["test_acc"] == sh["test_acc"]
