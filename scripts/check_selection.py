"""Does the cheap search pick what the exhaustive grid picks? (issue 24, docs/results.md)

    python scripts/check_selection.py SWEEP [SWEEP ...] [--real TUNED_SWEEP]
    python scripts/check_selection.py SWEEP [SWEEP ...] --rules   # other rung statistics
    python scripts/check_selection.py docs/results/selection/*   # the five in the docs

Each SWEEP is an exhaustive reference sweep (``bash scripts/tune.sh``); the records of the
five in docs/results.md are in docs/results/selection/. The references, the replay and the
rules are ``tl_experiments.report.selection`` (its doc says what each one means). Per data
set: every run's picks, then per strategy each reference's and the search's mean validation
accuracy and verdict, and whether the target holds against each reference. ``--real``
compares the replay's picks with a real tuned sweep of the first SWEEP's data. ``--rules``:
one row per rung statistic (``RULES``), one cell per data set (the header line says what
the cell holds). ``cost``: the epochs the search trained, in whole runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from tl_experiments.report.selection import RULES, agreement, check, meets, runs
from tl_experiments.tuning import candidate_name


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


def _doc_table(per_run: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The summary as docs/results.md shows it: percentages, one column per reference."""
    best = per_run.groupby("strategy")["best_setting"].first()

    def pick(row, who: str) -> str:
        return f"{row[f'val_{who}'] * 100:.1f} ({row[f'v_{who}']})"

    return pd.DataFrame(
        {
            "strategy": table["strategy"],
            "best setting": table["strategy"].map(best),
            "val, best setting": [pick(r, "ref") for _, r in table.iterrows()],
            "val, each seed's better setting": [pick(r, "ex") for _, r in table.iterrows()],
            "val, the search's picks": [pick(r, "sh") for _, r in table.iterrows()],
            "vs best setting (pts)": table["diff_ref"].map("{:+.2f}".format),
            "vs each seed's better (pts)": table["diff_ex"].map("{:+.2f}".format),
        }
    )


def _rules(sweeps: list[Path], first_rung: int | None) -> pd.DataFrame:
    """Rule x sweep, against the best setting and against each seed's better setting: the
    most points the search's picks fall below it (0 where never below), verdicts agreeing
    (same groups); then the search cost in runs, mean (max)."""
    table = {}
    for sweep in sweeps:
        records = runs(sweep)
        own = check(records, first_rung)[0]
        cells = []
        for rule in RULES:
            per_run, verdicts = check(records, first_rung, rule)
            if rule == next(iter(RULES)) and not per_run["halving"].equals(own["halving"]):
                raise SystemExit(f"{sweep}: the rule replay differs from successive_halving's")
            parts = [_rule_cell(verdicts, ref) for ref in ("ref", "ex")]
            cost = per_run["cost"]
            cells.append(" · ".join(parts) + f" · {cost.mean():.2f} ({cost.max():.1f})")
        table[sweep.name] = cells
    return pd.DataFrame(table, index=list(RULES)).rename_axis("rule").reset_index()


def _rule_cell(verdicts: pd.DataFrame, ref: str) -> str:
    below = max(0.0, -verdicts[f"diff_{ref}"].min())
    same, groups = agreement(verdicts, ref)
    return f"{below:.2f} {same}/{len(verdicts)} ({groups})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--real", type=Path, default=None)
    parser.add_argument("--first-rung", type=int, default=None, help="replay another rung")
    parser.add_argument("--rules", action="store_true", help="compare rung statistics (RULES)")
    args = parser.parse_args()
    if args.rules:
        print(
            "best setting: pts below, verdicts agreeing (same groups) · each seed's better "
            "setting: the same · cost in runs, mean (max)\n"
        )
        print(_md(_rules(args.sweeps, args.first_rung)))
        return
    for sweep in args.sweeps:
        per_run, table = check(sweep, args.first_rung)
        rung = args.first_rung or "the runs' own"
        print(f"\n## {sweep} (first rung: {rung})\n")
        print(_md(per_run))
        print()
        print(_md(table))
        print()
        print(_md(_doc_table(per_run, table)))
        print(f"\nagainst the best setting: {meets(table, 'ref')}")
        print(f"against each seed's better setting: {meets(table, 'ex')}")
        if args.real is not None and sweep == args.sweeps[0]:  # the same data as the real one
            print(_real(args.real, per_run))


if __name__ == "__main__":
    main()
