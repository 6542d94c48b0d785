"""What unfreezing cost: validation accuracy in the epoch after stages start training.

A stage that unfreezes mid-run changes the features the head was fitted to; when its
BatchNorm switches to batch statistics of the target data, validation accuracy collapses
(docs/schedules.md, "BatchNorm"). This table makes that visible in every sweep: for each
strategy whose schedule unfreezes, the largest drop of validation accuracy from the epoch
before an unfreezing to the epoch it happened in, over all runs and unfreezings.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["render_unfreezing", "unfreezing_drops"]


def unfreezing_drops(history: list[dict]) -> list[float]:
    """``val_acc`` before minus after, for each epoch in which more stages trained than in
    the one before (positive = a drop); empty when the run never unfroze a stage."""
    drops = []
    for before, after in zip(history, history[1:], strict=False):
        more = after.get("trainable_stages", 0) > before.get("trainable_stages", 0)
        if more and "val_acc" in before and "val_acc" in after:
            drops.append(before["val_acc"] - after["val_acc"])
    return drops


def render_unfreezing(frame: pd.DataFrame) -> str:
    """Markdown: per strategy that unfreezes, its unfreezings and the largest drop."""
    rows = {}
    for _, run in frame.iterrows():
        drops = unfreezing_drops(run.get("history") or [])
        if drops:
            rows.setdefault(run["strategy"], []).extend(drops)
    if not rows:
        return ""
    lines = [
        "Validation accuracy in the epoch after stages unfreeze (drop = before - after, "
        "points; the largest over every run and unfreezing):",
        "",
        "| Approach | Unfreezings | Largest drop (pts) |",
        "|---|---|---|",
    ]
    for strategy, drops in sorted(rows.items()):
        lines.append(f"| {strategy} | {len(drops)} | {max(drops) * 100:.1f} |")
    return "\n".join(lines)
