"""The advisor's hit rate over the sweeps of scripts/verify_advisor.sh: one row per dataset.

    python scripts/advisor_hits.py logs/multirun/compare_strategies logs/multirun/advisor/*/

A pick is right when it is the validation winner or not distinguishable from it (the
paired 95% interval of its test-accuracy difference covers 0, >= 3 seeds): the rule of
``tl_experiments.report.advice_check.pick_is_right``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tl_experiments.report import compare_sweep
from tl_experiments.report.advice_check import pick_is_right, read_advice
from tl_experiments.report.paired import BEST, TIED


def row(sweep: Path) -> tuple[str, bool | None]:
    advice = read_advice(sweep)
    comparison = compare_sweep(sweep)
    pick = advice["strategy"]
    judged = advice["judgements"]
    winners = comparison[comparison["verdict"].isin([BEST, TIED])]
    mine = comparison[comparison["strategy"] == pick]
    diff = "–"
    if not mine.empty and mine.iloc[0]["verdict"] not in (BEST, TIED):
        m = mine.iloc[0]
        diff = f"{m['diff_mean'] * 100:+.1f} ± {m['diff_ci95'] * 100:.1f}"
    right = pick_is_right(comparison, pick)
    sim = judged["similarity"]
    score = sim.get("ce_reduction")
    cells = [
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
    ]
    return "| " + " | ".join(cells) + " |", right


def main(folders: list[str]) -> None:
    sweeps = [Path(f) for f in folders if (Path(f) / "advice.json").is_file()]
    header = [
        "data",
        "train images",
        "similarity (score)",
        "budget",
        "rule",
        "pick",
        "winner (val %)",
        "pick - winner (test pts, paired 95%)",
        "verdict",
        "pick",
    ]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    results = []
    for sweep in sweeps:
        line, right = row(sweep)
        print(line)
        results.append(right)
    hits = sum(r is True for r in results)
    judged = sum(r is not None for r in results)
    print(f"\nHit rate: {hits} of {judged} datasets judged ({len(results)} swept).")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python scripts/advisor_hits.py SWEEP [SWEEP ...]  (each with advice.json)")
    main(sys.argv[1:])
