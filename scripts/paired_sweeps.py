"""Two sweeps of the same jobs under two configurations, paired by (strategy, seed).

    python scripts/paired_sweeps.py logs/multirun/compare_classic logs/multirun/compare_classic_es2

Prints, per strategy: test accuracy in each sweep, the paired difference (B - A) with its
95% Student-t interval over seeds, training seconds and epochs in each; then the whole
sweeps' job time. Used for the early-stopping measurement in docs/results.md.
"""

from __future__ import annotations

import sys

import pandas as pd

from tl_experiments.report import find_runs, mean_ci95, runs_frame


def _frame(sweep: str) -> pd.DataFrame:
    frame = runs_frame(find_runs(sweep))
    return frame.set_index(["strategy", "seed"])[["test_acc", "train_seconds", "epochs"]]


def main(a: str, b: str) -> None:
    both = pd.merge(_frame(a), _frame(b), left_index=True, right_index=True, suffixes=("_a", "_b"))
    print(
        "| strategy | test A (%) | test B (%) | B - A (pts, paired) | train s A | train s B "
        "| epochs A | epochs B | seeds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for strategy, g in both.groupby(level="strategy", sort=False):
        diff, half = mean_ci95((g["test_acc_b"] - g["test_acc_a"]).tolist())
        print(
            f"| {strategy} | {100 * g['test_acc_a'].mean():.1f} "
            f"| {100 * g['test_acc_b'].mean():.1f} "
            f"| {100 * diff:+.1f} ± {100 * half:.1f} | {g['train_seconds_a'].sum():.0f} "
            f"| {g['train_seconds_b'].sum():.0f} | {g['epochs_a'].mean():.1f} "
            f"| {g['epochs_b'].mean():.1f} | {len(g)} |"
        )
    ta, tb = both["train_seconds_a"].sum(), both["train_seconds_b"].sum()
    print(f"\nTraining seconds, all jobs: A {ta:.0f}, B {tb:.0f} ({100 * (1 - tb / ta):.0f}% less)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
