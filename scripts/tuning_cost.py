"""What tuning costs: a tuned sweep against the same sweep with fixed recipes (issue 24).

    python scripts/tuning_cost.py FIXED_SWEEP TUNED_SWEEP

Per strategy and in all: CPU seconds of the jobs (``cpu_seconds``: every thread of each
job's process, which the load of other work on the machine hardly moves), wall seconds of
the jobs (``finished_at - started_at``: what a user waits for, which that load does move),
and epochs trained. Run both sweeps in one session on one machine; the ratios are the
result, not the seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def _jobs(sweep: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(sweep.rglob("metrics.json")):
        m = json.loads(path.read_text())
        if "candidates" in path.parts:
            continue
        tuning = m.get("tuning") or {}
        epochs = sum(len(c["val_acc"]) for c in tuning.get("candidates", [])) or len(
            m.get("history") or []
        )
        rows.append(
            {
                "strategy": m["strategy"],
                "cpu": m.get("cpu_seconds"),
                "wall": m["finished_at"] - m["started_at"],
                "epochs": epochs,
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fixed", type=Path)
    parser.add_argument("tuned", type=Path)
    args = parser.parse_args()
    fixed, tuned = _jobs(args.fixed), _jobs(args.tuned)
    f = fixed.groupby("strategy").sum(numeric_only=True)
    t = tuned.groupby("strategy").sum(numeric_only=True)
    f.loc["all"], t.loc["all"] = f.sum(), t.sum()
    print(f"jobs: fixed {len(fixed)}, tuned {len(tuned)}\n")
    print(
        "| strategy | CPU s fixed | CPU s tuned | ratio | wall s fixed | wall s tuned | ratio "
        "| epochs fixed | epochs tuned | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in t.index:
        cells = [s]
        for col in ("cpu", "wall", "epochs"):
            a, b = f.loc[s, col], t.loc[s, col]
            cells += [f"{a:.0f}", f"{b:.0f}", f"{b / a:.2f}x"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
