"""Does the cheap search pick what the exhaustive grid picks? (issue 24, docs/results.md)

    python scripts/check_selection.py SWEEP [SWEEP ...] [--real TUNED_SWEEP]

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
settings each search selected (paired by seed), which must agree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

from tl_experiments.report.paired import compare_to_winner
from tl_experiments.tuning import candidate_name, successive_halving


def _runs(sweep: Path) -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted(sweep.rglob("metrics.json"))]
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


def _replay(cands: list[dict], first_rung: int | None = None) -> tuple[int, int]:
    """(exhaustive pick, successive halving's pick) as indices into ``cands``, at today's
    ``tune.rung`` and ``tune.reduction_factor`` (or another first rung)."""
    curves = [c["val_acc"] for c in cands]
    best = [c["best_val_acc"] for c in cands]
    exhaustive = best.index(max(best))  # the first of equals, as the search's study does
    epochs = len(curves[0])
    halving = successive_halving(
        [c["params"] for c in cands],
        epochs,
        first_rung or max(1, round(epochs * TUNE["rung"])),
        TUNE["reduction_factor"],
        lambda i, n: curves[i][:n],
    ).selected
    return exhaustive, halving


def check(sweep: Path, first_rung: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for m in _runs(sweep):
        cands = _candidates(m)
        ex, sh = _replay(cands, first_rung)
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
    return table


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--real", type=Path, default=None)
    parser.add_argument("--first-rung", type=int, default=None, help="replay another rung")
    args = parser.parse_args()
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
