"""Predict, then verify: the advisor's pick (``advice.json``) beside the sweep's measured winner.

``tl-advise advice_out=<sweep>/advice.json`` writes the prediction
before the sweep runs; the report only reads it. Recomputing the pick here from the
runs' metadata would need the backbone and the images (similarity and budget are
measured), and a pick made after the results are in is no prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tl_experiments.report.paired import BEST, TIED
from tl_experiments.report.table import MIN_SEEDS

__all__ = ["ADVICE_FILE", "MIN_SEEDS", "pick_is_right", "read_advice", "render_advice_check"]

ADVICE_FILE = "advice.json"


def read_advice(sweep_dir: Path) -> dict | None:
    """The advice saved in ``sweep_dir``, or None when there is none (or it is unreadable)."""
    path = Path(sweep_dir) / ADVICE_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _same_setting(summary: pd.DataFrame, advice: dict) -> pd.DataFrame:
    # Only groups of the data, model, size and image size the advice was made for.
    keep = pd.Series(True, index=summary.index)
    for key in ("data", "model", "samples_per_class", "img_size"):
        if key in summary and advice.get(key) is not None:
            keep &= summary[key].astype(str) == str(advice[key])
        elif key == "samples_per_class" and key in summary:  # null = every training image
            keep &= summary[key].isna()
    return summary[keep]


def _acc(group: pd.Series) -> str:
    return f"val {group['best_val_acc_mean'] * 100:.1f}%, test {group['test_acc_mean'] * 100:.1f}%"


# A pick counts as right when it is the validation winner or the data cannot tell it apart
# from the winner (paired over seeds); that takes at least MIN_SEEDS seeds.


def pick_is_right(comparison: pd.DataFrame, pick: str) -> bool | None:
    """Whether ``pick`` is the winner or not distinguishable from it; None when the
    comparison cannot say (the pick was not run, or fewer than MIN_SEEDS pairs)."""
    row = comparison[comparison["strategy"] == pick]
    if row.empty:
        return None
    row = row.iloc[0]
    if row["verdict"] in (BEST, TIED):
        return True
    if row["pairs"] < MIN_SEEDS:
        return None
    return row["verdict"] == "not distinguishable"


def render_advice_check(comparison: pd.DataFrame, advice: dict) -> str:
    """Markdown: the advisor's pick beside the measured winner, judged paired over seeds."""
    pick = advice.get("strategy", "?")
    rule = advice.get("rule", {}).get("description", "?")
    lines = [f"Advisor's pick: **{pick}** (rule: {rule}); `{advice.get('command', '')}`."]
    groups = _same_setting(comparison, advice)
    winners = groups[groups["verdict"].isin([BEST, TIED])] if not groups.empty else groups
    if winners.empty:
        lines.append(
            "The sweep has no finished run of the data and model the advice was made "
            "for, so it cannot be checked."
        )
        return "\n".join(lines)
    names = " and ".join(f"**{w['strategy']}** ({_acc(w)})" for _, w in winners.iterrows())
    lines.append(f"Measured winner (highest mean val accuracy): {names}.")
    right = pick_is_right(groups, pick)
    picked = groups[groups["strategy"] == pick]
    if picked.empty:
        lines.append(
            f"The sweep did not run {pick}, so the pick cannot be checked; "
            f"add strategy={pick} to the sweep."
        )
        return "\n".join(lines)
    p = picked.iloc[0]
    diff = f"{p['diff_mean'] * 100:+.1f} ± {p['diff_ci95'] * 100:.1f} test points, paired"
    if p["verdict"] in (BEST, TIED):
        lines.append(f"Right: the pick is the winner ({p['verdict']}).")
    elif right is None:
        lines.append(
            f"Cannot be judged: {pick} has {p['pairs']} seed(s) paired with the winner "
            f"({diff}); at least {MIN_SEEDS} are needed."
        )
    elif right:
        lines.append(f"Right: the pick is not distinguishable from the winner ({diff}).")
    else:
        lines.append(f"Wrong: the pick is {p['verdict']} than the winner ({diff}).")
    return "\n".join(lines)
