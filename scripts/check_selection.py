"""Does the cheap search pick what the exhaustive grid picks? (issue 24, docs/results.md)

    python scripts/check_selection.py SWEEP [SWEEP ...] [--real TUNED_SWEEP]
    python scripts/check_selection.py SWEEP [SWEEP ...] --rules   # other rung statistics

(``--real`` is compared with the first SWEEP: a tuned sweep of the same data.)

Each SWEEP is an exhaustive reference sweep (``bash scripts/tune.sh``: every setting of each
strategy's grid trained for every epoch, ``tune.exhaustive=true``). Successive halving's
choice is replayed on the recorded validation curves with the very function the runs use
(``tuning.successive_halving``, same rungs): a rung checkpoint resumed is the uninterrupted
run to the bit on the CPU (tests/test_tuning.py), so the replay selects what a real cheap
run selects; ``--real`` checks that against a real tuned sweep of the same data.

Per strategy: the mean over seeds of the full-training validation accuracy of the setting
each search selected (per seed), and their difference (target: within 1 point); then the
verdicts of each strategy against the validation winner, with the test accuracies of the
settings each search selected (paired by seed), which must agree. ``cost`` is the epochs
the search trained, in whole runs (2 settings, first rung at half: 1.5; a tie at the rung lets
both settings go on, as Optuna's pruner does, up to 2.0).

``--rules`` replays other statistics for the rung's decision on the same curves (validation
loss, last accuracy, ...; ``RULES``), one row per rule: the largest difference over the
strategies, the verdicts that agree, the runs whose pick is worse than the exhaustive one, and
the mean search cost. The runs' own rule is replayed there by ``successive_halving`` itself.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from tl_experiments.report.paired import compare_to_winner
from tl_experiments.tuning import candidate_name, rungs, successive_halving


def _runs(sweep: Path) -> list[dict]:
    runs = [
        {**json.loads(p.read_text()), "dir": p.parent} for p in sorted(sweep.rglob("metrics.json"))
    ]
    return [m for m in runs if (m.get("tuning") or {}).get("method") == "exhaustive"]


CONF = Path(__file__).resolve().parents[1] / "conf"
TUNE = yaml.safe_load((CONF / "train.yaml").read_text())["tune"]


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
    "best accuracy so far, ties to the larger step (the runs' rule)": lambda acc, loss, i: (
        max(acc),
        i,
    ),
    "best accuracy so far, ties kept (Optuna's pruner alone)": lambda acc, loss, i: (max(acc),),
    "last accuracy": lambda acc, loss, i: (acc[-1],),
    "mean accuracy of the last 2 epochs": lambda acc, loss, i: (sum(acc[-2:]) / len(acc[-2:]),),
    "last loss": lambda acc, loss, i: (-loss[-1],),
    "lowest loss so far": lambda acc, loss, i: (-min(loss),),
    "mean loss of the last 2 epochs": lambda acc, loss, i: (-sum(loss[-2:]) / len(loss[-2:]),),
    "best accuracy so far, ties by last loss": lambda acc, loss, i: (max(acc), -loss[-1]),
}


def _first(epochs: int, first_rung: int | None) -> int:
    return first_rung or max(1, round(epochs * TUNE["rung"]))


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
    sweep: Path, first_rung: int | None = None, rule: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per run and per strategy: the exhaustive pick against successive halving's (or, with
    ``rule``, against the same search ranking on another statistic: ``RULES``)."""
    rows = []
    for m in _runs(sweep):
        cands = _candidates(m)
        ex = _exhaustive(cands)
        sh, cost = (
            _replay(cands, first_rung)
            if rule is None
            else _replay_rule(m, cands, RULES[rule], first_rung)
        )
        rows.append(
            {
                "strategy": m["strategy"],
                "seed": m["seed"],
                "exhaustive": candidate_name(cands[ex]["params"]),
                "halving": candidate_name(cands[sh]["params"]),
                "val_ex": cands[ex]["best_val_acc"],
                "val_sh": cands[sh]["best_val_acc"],
                "test_ex": cands[ex]["reference_test_acc"],
                "test_sh": cands[sh]["reference_test_acc"],
                "cost": cost,
            }
        )
    per_run = pd.DataFrame(rows)
    return per_run, _verdicts(per_run)


def _verdicts(per_run: pd.DataFrame) -> pd.DataFrame:
    out = []
    for who in ("ex", "sh"):
        frame = pd.DataFrame(
            [
                {
                    "strategy": s,
                    "model": "-",
                    "data": "-",
                    "samples_per_class": 0,
                    "img_size": 0,
                    "best_val_acc_mean": g[f"val_{who}"].mean(),
                    "test_by_seed": dict(zip(g["seed"], g[f"test_{who}"], strict=True)),
                }
                for s, g in per_run.groupby("strategy")
            ]
        )
        v = compare_to_winner(frame)[["strategy", "best_val_acc_mean", "verdict"]]
        out.append(v.rename(columns={"best_val_acc_mean": f"val_{who}", "verdict": f"v_{who}"}))
    table = out[0].merge(out[1], on="strategy")
    table["diff_pts"] = (table["val_sh"] - table["val_ex"]) * 100
    return table.merge(per_run.groupby("strategy")["cost"].mean().reset_index(), on="strategy")


def _real(tuned: Path, per_run: pd.DataFrame) -> str:
    real = {}
    for path in tuned.rglob("metrics.json"):
        m = json.loads(path.read_text())
        if m.get("selected"):
            real[(m["strategy"], m["seed"])] = candidate_name(m["selected"])
    pairs = [(r.strategy, r.seed, r.halving) for r in per_run.itertuples()]
    both = [(s, seed, h) for s, seed, h in pairs if (s, seed) in real]
    same = sum(real[(s, seed)] == h for s, seed, h in both)
    return f"real tuned sweep {tuned}: {same} of {len(both)} runs selected as the replay did"


def _md(frame: pd.DataFrame) -> str:
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def _rules(sweeps: list[Path], first_rung: int | None) -> pd.DataFrame:
    """Rule x sweep: largest |difference| (pts), verdicts agreeing, runs whose pick has a
    lower validation accuracy than the exhaustive pick, search cost in runs (mean, max)."""
    table = {}
    for sweep in sweeps:
        runs = check(sweep, first_rung)[0]
        cells = []
        for rule in RULES:
            per_run, verdicts = check(sweep, first_rung, rule)
            if rule == next(iter(RULES)) and not per_run["halving"].equals(runs["halving"]):
                raise SystemExit(f"{sweep}: the rule replay differs from successive_halving's")
            agree = (verdicts["v_ex"] == verdicts["v_sh"]).sum()
            worse = (per_run["val_sh"] < per_run["val_ex"]).sum()
            cost = per_run["cost"]
            cells.append(
                f"{verdicts['diff_pts'].abs().max():.2f} · {agree}/{len(verdicts)} · "
                f"{worse}/{len(per_run)} · {cost.mean():.2f} ({cost.max():.1f})"
            )
        table[sweep.name] = cells
    return pd.DataFrame(table, index=list(RULES)).rename_axis("rule").reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--real", type=Path, default=None)
    parser.add_argument("--first-rung", type=int, default=None, help="replay another rung")
    parser.add_argument("--rules", action="store_true", help="compare rung statistics (RULES)")
    args = parser.parse_args()
    if args.rules:
        print("max |diff| (pts) · verdicts agreeing · runs picked worse · cost in runs (max)\n")
        print(_md(_rules(args.sweeps, args.first_rung)))
        return
    for sweep in args.sweeps:
        per_run, table = check(sweep, args.first_rung)
        rung = args.first_rung or "the runs' own"
        print(f"\n## {sweep} (first rung: {rung})\n")
        print(_md(per_run))
        print()
        print(_md(table))
        ok = (table["diff_pts"].abs() <= 1).all() and (table["v_ex"] == table["v_sh"]).all()
        print(f"\nwithin 1 val point and same verdicts: {'yes' if ok else 'NO'}")
        if args.real is not None and sweep == args.sweeps[0]:  # the same data as the real one
            print(_real(args.real, per_run))


if __name__ == "__main__":
    main()
