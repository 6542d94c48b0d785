"""Predict, then verify: the advisor's pick (``advice.json``) beside the sweep's measured winner.

``python -m tl_experiments.advise advice_out=<sweep>/advice.json`` writes the prediction
before the sweep runs; the report only reads it. Recomputing the pick here from the
runs' metadata would need the backbone and the images (similarity and budget are
measured), and a pick made after the results are in is no prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tl_experiments.report.table import best_group

__all__ = ["ADVICE_FILE", "read_advice", "render_advice_check"]

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


def render_advice_check(summary: pd.DataFrame, advice: dict) -> str:
    """Markdown: the advisor's pick, the measured winner (best mean val accuracy), the gap."""
    pick = advice.get("strategy", "?")
    rule = advice.get("rule", {}).get("description", "?")
    lines = [f"Advisor's pick: **{pick}** (rule: {rule}); `{advice.get('command', '')}`."]
    groups = _same_setting(summary, advice)
    winner = best_group(groups)
    if winner is None:
        lines.append(
            "The sweep has no finished run of the data and model the advice was made "
            "for, so it cannot be checked."
        )
        return "\n".join(lines)
    lines.append(
        f"Measured winner (highest mean val accuracy): **{winner['strategy']}** ({_acc(winner)})."
    )
    picked = groups[groups["strategy"] == pick]
    if picked.empty:
        lines.append(
            f"The sweep did not run {pick}, so the pick cannot be checked; "
            f"add strategy={pick} to the sweep."
        )
    elif pick == winner["strategy"]:
        lines.append("The pick is the winner.")
    else:
        p = picked.iloc[0]
        gap = (winner["test_acc_mean"] - p["test_acc_mean"]) * 100
        lines.append(
            f"The pick is not the winner: {pick} reached {_acc(p)}, "
            f"{gap:.1f} test-accuracy points below {winner['strategy']}."
        )
    return "\n".join(lines)
