"""Tables of the studies that read several sweeps or one result of a sweep closely, as
markdown (``tl-compare``'s subcommands; the docs cite their output):

- ``paired_sweeps_table``: two sweeps of the same jobs under two configurations, paired by
  (strategy, seed) (docs/results.md, early stopping);
- ``wise_ft_paired_table``: WiSE-FT's accuracy at each alpha minus at alpha = 1, paired over
  seeds (docs/shift.md, "WiSE-FT");
- ``advisor_hits_table``: the advisor's pick against each sweep's winner, and its hit rate
  (docs/advisor.md, scripts/verify_advisor.sh).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tl_experiments.report.advice_check import pick_is_right, read_advice
from tl_experiments.report.collect import find_runs, runs_frame
from tl_experiments.report.paired import BEST, TIED
from tl_experiments.report.table import mean_ci95
from tl_experiments.report.write import compare_sweep

__all__ = ["advisor_hits_table", "paired_sweeps_table", "wise_ft_paired_table"]


def _table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _jobs(sweep: Path) -> pd.DataFrame:
    frame = runs_frame(find_runs(sweep))
    return frame.set_index(["strategy", "seed"])[["test_acc", "train_seconds", "epochs"]]


def paired_sweeps_table(a: Path, b: Path) -> str:
    """Per strategy: test accuracy in each sweep, the paired difference (B - A) with its 95%
    t-interval over seeds, training seconds and epochs in each; then all jobs' training time."""
    both = pd.merge(_jobs(a), _jobs(b), left_index=True, right_index=True, suffixes=("_a", "_b"))
    rows = []
    for strategy, g in both.groupby(level="strategy", sort=False):
        diff, half = mean_ci95((g["test_acc_b"] - g["test_acc_a"]).tolist())
        rows.append(
            [
                str(strategy),
                f"{100 * g['test_acc_a'].mean():.1f}",
                f"{100 * g['test_acc_b'].mean():.1f}",
                f"{100 * diff:+.1f} ± {100 * half:.1f}",
                f"{g['train_seconds_a'].sum():.0f}",
                f"{g['train_seconds_b'].sum():.0f}",
                f"{g['epochs_a'].mean():.1f}",
                f"{g['epochs_b'].mean():.1f}",
                str(len(g)),
            ]
        )
    header = ["strategy", "test A (%)", "test B (%)", "B - A (pts, paired)", "train s A"]
    header += ["train s B", "epochs A", "epochs B", "seeds"]
    ta, tb = both["train_seconds_a"].sum(), both["train_seconds_b"].sum()
    total = f"Training seconds, all jobs: A {ta:.0f}, B {tb:.0f} ({100 * (1 - tb / ta):.0f}% less)"
    return "\n".join([*_table(header, rows), "", total])


def wise_ft_paired_table(sweep: Path) -> str:
    """Per strategy and test set: accuracy at each alpha < 1 minus at alpha = 1, mean ± 95%
    t-interval over seeds."""
    curves: dict[str, list[dict]] = {}
    for run in find_runs(sweep):
        if run.ok and run.metrics.get("wise_ft"):
            curves.setdefault(run.metrics["strategy"], []).append(run.metrics["wise_ft"])
    lines = []
    for strategy, cs in sorted(curves.items()):
        alphas, names = cs[0]["alphas"], list(cs[0]["test_acc"])
        rows = []
        for i, alpha in enumerate(alphas[:-1]):
            cells = [f"{alpha:g}"]
            for n in names:
                mean, half = mean_ci95([c["test_acc"][n][i] - c["test_acc"][n][-1] for c in cs])
                cells.append(f"{100 * mean:+.1f} ± {100 * half:.1f}")
            rows.append(cells)
        lines += ["", f"{strategy} ({len(cs)} seeds): alpha minus 1, points"]
        lines += _table(["alpha", *names], rows)
    return "\n".join(lines[1:]) if lines else "No run of the sweep has WiSE-FT results."


def _hit_row(sweep: Path, advice: dict) -> tuple[list[str], bool | None]:
    comparison = compare_sweep(sweep)
    pick, judged = advice["strategy"], advice["judgements"]
    winners = comparison[comparison["verdict"].isin([BEST, TIED])]
    mine = comparison[comparison["strategy"] == pick]
    diff = "–"
    if not mine.empty and mine.iloc[0]["verdict"] not in (BEST, TIED):
        m = mine.iloc[0]
        diff = f"{m['diff_mean'] * 100:+.1f} ± {m['diff_ci95'] * 100:.1f}"
    right = pick_is_right(comparison, pick)
    sim, score = judged["similarity"], judged["similarity"].get("ce_reduction")
    return [
        sweep.name,
        str(judged["size"].get("n_train", "?")),
        sim["value"] if score is None else f"{sim['value']} ({score:+.2f})",
        judged["budget"]["value"],
        str(advice["rule"]["number"]),
        pick,
        ", ".join(
            f"{w['strategy']} ({w['best_val_acc_mean'] * 100:.1f})" for _, w in winners.iterrows()
        ),
        diff,
        "?" if mine.empty else str(mine.iloc[0]["verdict"]),
        {True: "right", False: "wrong", None: "cannot tell"}[right],
    ], right


def advisor_hits_table(sweeps: Sequence[Path]) -> str:
    """One row per sweep with an ``advice.json``: the pick, the winners, the verdict; then the
    hit rate. A pick is right when it is the validation winner or not distinguishable from
    it (``advice_check.pick_is_right``)."""
    header = ["data", "train images", "similarity (score)", "budget", "rule", "pick"]
    header += ["winner (val %)", "pick - winner (test pts, paired 95%)", "verdict", "pick"]
    rows, results = [], []
    for sweep in map(Path, sweeps):
        advice = read_advice(sweep)
        if advice is not None:
            row, right = _hit_row(sweep, advice)
            rows.append(row)
            results.append(right)
    hits, judged = sum(r is True for r in results), sum(r is not None for r in results)
    rate = f"Hit rate: {hits} of {judged} datasets judged ({len(results)} swept)."
    return "\n".join([*_table(header, rows), "", rate])
