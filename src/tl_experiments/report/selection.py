"""Does the cheap search pick what the exhaustive grid picks? (issue 24; the command is
``scripts/check_selection.py``, the tables are in docs/results.md, "Cheap search").

Each sweep is an exhaustive reference sweep (``bash scripts/tune.sh``: every setting of each
strategy's grid trained for every epoch, ``tune.exhaustive=true``). Successive halving's
choice is replayed on the recorded validation curves with the very function the runs use
(``tuning.successive_halving``, same rungs): a rung checkpoint resumed is the uninterrupted
run to the bit on the CPU (tests/test_tuning.py), so the replay selects what a real cheap
run selects.

Two references from the exhaustive grid, per strategy:

- ``ref``, the best setting of the grid: the one setting with the best mean validation
  accuracy over the seeds (``report.paired.select_settings``, the rule of the fair table that
  ``scripts/tune.sh`` used to print). The target: the mean over seeds of the full-training
  validation accuracy of the setting the search selected (per seed) is at most 1 point below
  it. It can be above: a per-run search may pick each seed's better setting.
- ``ex``, each seed's better setting (the per-seed oracle): stricter, and biased upwards,
  because it is the larger of two noisy numbers on the same validation images.

Then the verdicts of each strategy against the validation winner (best / not
distinguishable / worse, with the test accuracies paired by seed) with each reference's and
with the search's picks. ``same groups``: the strategies not distinguishable from the winner
(the winner included) and the worse ones are the same, though the winner named may be another
of the group. ``RULES`` are other statistics a rung could rank on, replayed the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from tl_experiments.report.paired import BEST, TIED, compare_to_winner, select_settings
from tl_experiments.tuning import candidate_name, rungs, successive_halving

__all__ = ["RULES", "agreement", "check", "meets", "runs"]

CONF = Path(__file__).resolve().parents[3] / "conf"  # = train.py's
TUNE = yaml.safe_load((CONF / "train.yaml").read_text())["tune"]
# The columns report.paired reads to split a table into comparisons: one comparison here.
_BLOCK = {"model": "-", "data": "-", "samples_per_class": 0, "img_size": 0}


def runs(sweep: Path) -> list[dict]:
    runs = [
        {**json.loads(p.read_text()), "dir": p.parent} for p in sorted(sweep.rglob("metrics.json"))
    ]
    return [m for m in runs if (m.get("tuning") or {}).get("method") == "exhaustive"]


def _space(strategy: str) -> dict:
    """The strategy's search space as its file has it now."""
    return yaml.safe_load((CONF / "strategy" / f"{strategy}.yaml").read_text())["search"]


def _candidates(m: dict) -> list[dict]:
    """The recorded candidates inside today's search space of the run's strategy (a reference
    sweep may have tried a wider grid)."""
    space = _space(m["strategy"])
    return [
        c
        for c in m["tuning"]["candidates"]
        if all(any(abs(c["params"][k] - v) < 1e-12 for v in vs) for k, vs in space.items())
    ]


# What a candidate is ranked on at a rung: (val accuracy, val loss) per epoch up to the rung,
# and its place in the grid -> a key, higher first. The first is the runs' own (halving.py).
Rule = Callable[[list[float], list[float], int], tuple[float, ...]]
RULES: dict[str, Rule] = {
    "last accuracy, ties to the larger step (the runs' rule)": lambda acc, loss, i: (acc[-1], i),
    "best accuracy so far, ties to the larger step (until 2026-12-05)": lambda acc, loss, i: (
        max(acc),
        i,
    ),
    "best accuracy so far, ties kept (Optuna's pruner alone)": lambda acc, loss, i: (max(acc),),
    "last accuracy": lambda acc, loss, i: (acc[-1],),
    "mean accuracy of the last 2 epochs, ties to the larger step": lambda acc, loss, i: (
        sum(acc[-2:]) / len(acc[-2:]),
        i,
    ),
    "mean accuracy of the last 2 epochs": lambda acc, loss, i: (sum(acc[-2:]) / len(acc[-2:]),),
    "last loss": lambda acc, loss, i: (-loss[-1],),
    "lowest loss so far": lambda acc, loss, i: (-min(loss),),
    "mean loss of the last 2 epochs": lambda acc, loss, i: (-sum(loss[-2:]) / len(loss[-2:]),),
    "best accuracy so far, ties by last loss": lambda acc, loss, i: (max(acc), -loss[-1]),
}


def _first(epochs: int, first_rung: int | None) -> int:
    return first_rung or max(1, round(epochs * TUNE["rung"]))


def _best_settings(runs: list[dict]) -> dict[str, str]:
    """Per strategy, the setting with the best mean validation accuracy over seeds: the
    product's own rule (``select_settings``, which the report's tuned tables use)."""
    rows: dict[tuple[str, str], list[float]] = {}
    for m in runs:
        for c in _candidates(m):
            rows.setdefault((m["strategy"], candidate_name(c["params"])), []).append(
                c["best_val_acc"]
            )
    summary = pd.DataFrame(
        [
            {**_BLOCK, "strategy": s, "setting": name, "best_val_acc_mean": sum(v) / len(v)}
            for (s, name), v in rows.items()
        ]
    )
    return dict(zip(*select_settings(summary)[["strategy", "setting"]].T.values, strict=True))


def _exhaustive(cands: list[dict]) -> int:
    best = [c["best_val_acc"] for c in cands]
    return best.index(max(best))  # the first of equals, as the search's study does


def _replay(cands: list[dict], first_rung: int | None = None) -> tuple[int, float]:
    """Successive halving's pick (an index into ``cands``) and its cost in whole runs, at
    today's ``tune.rung`` and ``tune.reduction_factor`` (or another first rung)."""
    curves = [c["val_acc"] for c in cands]
    epochs = len(curves[0])
    result = successive_halving(
        [c["params"] for c in cands],
        epochs,
        _first(epochs, first_rung),
        TUNE["reduction_factor"],
        lambda i, n: curves[i][:n],
    )
    return result.selected, sum(len(c.val_acc) for c in result.candidates) / epochs


def _replay_rule(
    run: dict, cands: list[dict], rule: Rule, first_rung: int | None
) -> tuple[int, float]:
    """``_replay`` with candidates ranked by ``rule`` at each rung: the best
    ``1/reduction_factor`` (at least one) go on, ties included, as Optuna's pruner lets them
    for grids under 2 x reduction_factor; the pick is the survivors' best validation
    accuracy (the first of equals)."""
    curves = [(c["val_acc"], _val_loss(run, c)) for c in cands]
    epochs, reduction = len(curves[0][0]), TUNE["reduction_factor"]
    alive, trained = list(range(len(cands))), [epochs] * len(cands)
    for stop in rungs(epochs, _first(epochs, first_rung), reduction):
        if len(alive) == 1:
            break
        key = {i: rule(curves[i][0][:stop], curves[i][1][:stop], i) for i in alive}
        bar = sorted(key.values(), reverse=True)[max(1, len(alive) // reduction) - 1]
        for i in alive:
            trained[i] = stop if key[i] < bar else epochs
        alive = [i for i in alive if key[i] >= bar]
    best = max(cands[i]["best_val_acc"] for i in alive)
    return next(i for i in alive if cands[i]["best_val_acc"] == best), sum(trained) / epochs


def _val_loss(run: dict, cand: dict) -> list[float]:
    """A candidate's validation loss per epoch: its record's, or (sweeps made before the
    record kept it) its TensorBoard events'."""
    if cand.get("val_loss"):
        return cand["val_loss"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb, steps = run["dir"] / "candidates" / cand["folder"] / "tb", {}
    for path in sorted(tb.glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        if "val/loss" in events.Tags()["scalars"]:
            steps.update((e.step, e.value) for e in events.Scalars("val/loss"))
    loss = [steps[k] for k in sorted(steps)]
    if len(loss) != len(cand["val_acc"]):
        raise SystemExit(f"{tb}: {len(loss)} epochs of val/loss, {len(cand['val_acc'])} of val_acc")
    return loss


def check(
    sweep: Path | list[dict], first_rung: int | None = None, rule: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per run and per strategy: the exhaustive pick against successive halving's (or, with
    ``rule``, against the same search ranking on another statistic: ``RULES``). ``sweep``:
    a reference sweep's folder, or its records (``runs``), read once for several checks."""
    rows, records = [], runs(sweep) if isinstance(sweep, Path) else sweep
    best = _best_settings(records)
    for m in records:
        cands = _candidates(m)
        names = [candidate_name(c["params"]) for c in cands]
        if best[m["strategy"]] not in names:  # e.g. a killed sweep
            raise SystemExit(f"{m['dir']}: no record of {best[m['strategy']]}")
        ex, ref = _exhaustive(cands), names.index(best[m["strategy"]])
        sh, cost = (
            _replay(cands, first_rung)
            if rule is None
            else _replay_rule(m, cands, RULES[rule], first_rung)
        )
        picks = {"ref": ref, "ex": ex, "sh": sh}
        rows.append(
            {
                "strategy": m["strategy"],
                "seed": m["seed"],
                "best_setting": names[ref],
                "exhaustive": names[ex],
                "halving": names[sh],
                **{f"val_{k}": cands[i]["best_val_acc"] for k, i in picks.items()},
                **{f"test_{k}": cands[i]["reference_test_acc"] for k, i in picks.items()},
                "cost": cost,
            }
        )
    per_run = pd.DataFrame(rows)
    return per_run, _verdicts(per_run)


def _verdicts(per_run: pd.DataFrame) -> pd.DataFrame:
    out = []
    for who in ("ref", "ex", "sh"):
        frame = pd.DataFrame(
            [
                {
                    **_BLOCK,
                    "strategy": s,
                    "best_val_acc_mean": g[f"val_{who}"].mean(),
                    "test_by_seed": dict(zip(g["seed"], g[f"test_{who}"], strict=True)),
                }
                for s, g in per_run.groupby("strategy")
            ]
        )
        v = compare_to_winner(frame)[["strategy", "best_val_acc_mean", "verdict"]]
        out.append(v.rename(columns={"best_val_acc_mean": f"val_{who}", "verdict": f"v_{who}"}))
    table = out[0].merge(out[1], on="strategy").merge(out[2], on="strategy")
    table["diff_ref"] = (table["val_sh"] - table["val_ref"]) * 100
    table["diff_ex"] = (table["val_sh"] - table["val_ex"]) * 100
    return table.merge(per_run.groupby("strategy")["cost"].mean().reset_index(), on="strategy")


def _group(verdict: str) -> str:
    """The part of a verdict the data decides: in the winner's group or not."""
    return "top" if verdict in (BEST, TIED, "not distinguishable") else verdict


def agreement(table: pd.DataFrame, ref: str) -> tuple[int, int]:
    """Strategies whose verdict with the search's picks is the reference's, and those in
    the same group (``_group``)."""
    same = (table[f"v_{ref}"] == table["v_sh"]).sum()
    groups = (table[f"v_{ref}"].map(_group) == table["v_sh"].map(_group)).sum()
    return int(same), int(groups)


def meets(table: pd.DataFrame, ref: str) -> str:
    """The target against one reference: at most 1 point below it, the same verdicts."""
    close = (table[f"diff_{ref}"] >= -1).all()
    same, groups = agreement(table, ref)
    n = len(table)
    verdicts = "the same" if same == n else "the same groups" if groups == n else "different"
    return f"at most 1 point below: {'yes' if close else 'NO'}; verdicts: {verdicts}"
