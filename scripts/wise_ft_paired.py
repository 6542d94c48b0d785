"""Paired WiSE-FT differences of a sweep: accuracy at each alpha < 1 minus at alpha = 1, per
strategy and test set, mean ± 95% t-interval over seeds (docs/shift.md "WiSE-FT").

    python scripts/wise_ft_paired.py logs/multirun/peft
"""

from __future__ import annotations

import sys

from tl_experiments.report import find_runs, mean_ci95


def main(sweep: str) -> None:
    curves: dict[str, list[dict]] = {}
    for run in find_runs(sweep):
        if run.ok and run.metrics.get("wise_ft"):
            curves.setdefault(run.metrics["strategy"], []).append(run.metrics["wise_ft"])
    for strategy, cs in sorted(curves.items()):
        alphas, names = cs[0]["alphas"], list(cs[0]["test_acc"])
        print(f"\n{strategy} ({len(cs)} seeds): alpha minus 1, points")
        print("| alpha | " + " | ".join(names) + " |")
        for i, a in enumerate(alphas[:-1]):
            cells = []
            for n in names:
                mean, half = mean_ci95([c["test_acc"][n][i] - c["test_acc"][n][-1] for c in cs])
                cells.append(f"{100 * mean:+.1f} ± {100 * half:.1f}")
            print(f"| {a:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
