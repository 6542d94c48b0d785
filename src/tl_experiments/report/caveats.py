"""What the comparison's intervals cannot tell, said under the table.

Three limits, each a sentence with its fix: too few seeds (fewer than ``MIN_SEEDS``: the
Student-t interval from 2 seeds is 12.7 standard errors wide, or missing); validation or
test splits so small that one accuracy is uncertain by more than the differences shown
(every run tests on the same images, so seeds do not measure this: it is the binomial
interval of one accuracy, 1.96 * sqrt(p * (1 - p) / n), never below one image); and values
identical in every seed, whose zero spread from so few seeds is chance, not certainty.
"""

from __future__ import annotations

import math

import pandas as pd

from tl_experiments.report.paired import BEST, TIED
from tl_experiments.report.table import MIN_SEEDS

__all__ = ["image_resolution", "render_caveats"]

_SPLITS = {"val": ("validation", "best_val_acc_mean"), "test": ("test", "test_acc_mean")}


def image_resolution(accuracy: float, n_images: int) -> float:
    """Half-width (a fraction) of the 95% binomial interval of one accuracy on ``n_images``
    images, at least one image (``1 / n_images``)."""
    p = min(max(accuracy, 0.0), 1.0) if not math.isnan(accuracy) else 0.5
    return max(1.96 * math.sqrt(p * (1 - p) / n_images), 1 / n_images)


def render_caveats(comparison: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Markdown lines (``**Caution**: ...``) for each limit that applies; empty when none.

    Args:
        comparison: one row per strategy, from ``compare_to_winner``.
        runs: the runs of those rows (``val_size``, ``test_size`` from metrics.json).
    """
    if comparison.empty:
        return ""
    lines = [_few_seeds(comparison), *(_small_split(comparison, runs, s) for s in _SPLITS)]
    lines.append(_identical(comparison))
    return "\n".join(f"- **Caution**: {line}" for line in lines if line)


def _few_seeds(comparison: pd.DataFrame) -> str:
    seeds = int(comparison["n"].min())
    if seeds >= MIN_SEEDS:
        return ""
    have = "1 seed" if seeds == 1 else f"{seeds} seeds"
    return (
        f"only {have} for some rows: with fewer than {MIN_SEEDS} seeds the 95% intervals are "
        "missing or too wide to separate any two strategies, and a verdict is not a result; "
        f"run at least {MIN_SEEDS} seeds (seed=0,1,2)."
    )


def _small_split(comparison: pd.DataFrame, runs: pd.DataFrame, split: str) -> str:
    name, column = _SPLITS[split]
    if f"{split}_size" not in runs or comparison[column].isna().all():
        return ""
    sizes = pd.to_numeric(runs[f"{split}_size"], errors="coerce").dropna()
    if sizes.empty:  # runs that predate the split sizes in metrics.json
        return ""
    n = int(sizes.min())
    half = image_resolution(float(comparison[column].max()), n)
    shown = _differences(comparison, split)
    if not shown or min(shown) >= half:
        return ""
    return (
        f"the {name} split has {n} images: one image is {100 / n:.1f} points and one "
        f"{name} accuracy is uncertain by ±{half * 100:.1f} points (95%, binomial), more than "
        f"the smallest difference shown ({min(shown) * 100:.1f} points); seeds do not measure "
        f"this (every run uses the same {name} images); use more {name} images "
        f"(data.{'val' if split == 'val' else 'test'}_fraction or a larger folder)."
    )


def _differences(comparison: pd.DataFrame, split: str) -> list[float]:
    """The differences a reader compares: test differences to the winner, or the validation
    gaps behind the winner (what picked it)."""
    others = comparison[~comparison["verdict"].isin([BEST, TIED])]
    if split == "test":
        values = others["diff_mean"].abs()
    else:
        values = comparison["best_val_acc_mean"].max() - others["best_val_acc_mean"]
    return [float(v) for v in values if not math.isnan(v)]


def _identical(comparison: pd.DataFrame) -> str:
    """Rows whose accuracy (or difference to the winner) was the same in every seed."""
    found = []
    for _, row in comparison.iterrows():
        columns = [
            name
            for name, seeds, half in (
                ("validation", row["n"], row["best_val_acc_ci95"]),
                ("test", row["n"], row["test_acc_ci95"]),
                ("test vs best", row.get("pairs", 0), row.get("diff_ci95", math.nan)),
            )
            if seeds >= 2 and math.isnan(half) and not (name == "test vs best" and _won(row))
        ]
        if columns:
            found.append(f"{row['strategy']} ({', '.join(columns)})")
    if not found:
        return ""
    return (
        f"{'; '.join(found)}: the same value in each of the few seeds, so no interval is "
        f"shown; equal values from fewer than {MIN_SEEDS} seeds are chance, not certainty."
    )


def _won(row: pd.Series) -> bool:
    return row["verdict"] in (BEST, TIED)
