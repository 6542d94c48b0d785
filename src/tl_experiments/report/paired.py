"""Each strategy at its best on validation, then compared with the winner, paired by seed.

A run's seed draws its training images (``data.samples_per_class``) and its batch order;
validation and test images are the same for every run. So two strategies' runs of one seed
saw the same data, and their difference in test accuracy is measured on a pair: the mean of
the per-seed differences and its Student-t 95% interval (``seed_interval`` of the differences)
say whether the data can tell the two apart. Pairing removes the between-seed variation that
unpaired intervals carry, so it is both the stricter and the fairer test.

Selection uses validation only: within a strategy, the setting (learning rate, knob...) with
the best mean validation accuracy over seeds; across strategies, the winner is the best mean
validation accuracy. Test accuracy is read once, for the selected settings. Ties on
validation are kept as ties: no winner is ever picked by order.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tl_experiments.report.collect import GROUP_KEYS
from tl_experiments.report.table import seed_interval

__all__ = ["BEST", "TIED", "compare_to_winner", "paired_difference", "select_settings"]

BEST = "best on validation"
TIED = "tied best on validation"
# Validation accuracies closer than this are equal (they are ratios of small counts).
_TIE = 1e-9


def _blocks(summary: pd.DataFrame) -> list[str]:
    """Keys that split the summary into separate comparisons (data, model, size...)."""
    return [k for k in GROUP_KEYS if k != "strategy"]


def select_settings(summary: pd.DataFrame) -> pd.DataFrame:
    """Per block and strategy, the setting with the best mean val accuracy over seeds.

    Adds ``n_settings`` (how many settings the strategy was tried with). Equal validation
    means are broken by the setting's text, which a reader can see; no test number is read.
    """
    if summary.empty:
        return summary.assign(n_settings=pd.Series(dtype=int))
    rows = []
    keys = [*_blocks(summary), "strategy"]
    for _, group in summary.groupby(keys, dropna=False, sort=False):
        ranked = group.sort_values(
            ["best_val_acc_mean", "setting"], ascending=[False, True], na_position="last"
        )
        rows.append(ranked.iloc[0].to_dict() | {"n_settings": len(group)})
    return pd.DataFrame(rows)


def paired_difference(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """Mean of ``a[seed] - b[seed]`` over the seeds both have, the half-width of its 95%
    Student-t interval (NaN with fewer than two pairs, or fewer than ``MIN_SEEDS`` equal
    differences), and the number of pairs."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds if not (_nan(a[s]) or _nan(b[s]))]
    mean, half = seed_interval(diffs)
    return mean, half, len(diffs)


def _nan(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def compare_to_winner(selected: pd.DataFrame) -> pd.DataFrame:
    """Add, per block, the paired test-accuracy difference to the validation winner.

    Columns: ``diff_mean`` and ``diff_ci95`` (fractions; this row minus the winner),
    ``pairs`` and ``verdict``: ``best on validation``, ``tied best on validation``,
    ``not distinguishable`` (the interval covers 0), ``worse`` or ``better on test``
    (it excludes 0), or ``too few seeds`` (fewer than two pairs: no interval).
    """
    if selected.empty:
        return selected.assign(diff_mean=[], diff_ci95=[], pairs=[], verdict=[])
    parts = []
    blocks = _blocks(selected)
    for _, block in selected.groupby(blocks, dropna=False, sort=False):
        parts.append(_compare_block(block.copy()))
    out = pd.concat(parts)
    order = [*[k for k in blocks if out[k].nunique(dropna=False) > 1], "best_val_acc_mean"]
    ascending = [True] * (len(order) - 1) + [False]
    return out.sort_values([*order, "strategy"], ascending=[*ascending, True], ignore_index=True)


def _compare_block(block: pd.DataFrame) -> pd.DataFrame:
    val = block["best_val_acc_mean"].astype(float)
    top = val.max()
    winners = block[np.isclose(val, top, rtol=0, atol=_TIE)] if val.notna().any() else block[:0]
    # With a tie the differences are taken to the tied winner named first alphabetically:
    # any of them would do, and the verdict of the tied rows themselves says "tied".
    ref = winners.sort_values("strategy").iloc[0] if len(winners) else None
    means, halves, pairs, verdicts = [], [], [], []
    for idx, row in block.iterrows():
        if ref is None:
            mean, half, n = math.nan, math.nan, 0
        else:
            mean, half, n = paired_difference(row["test_by_seed"], ref["test_by_seed"])
        means.append(mean)
        halves.append(half)
        pairs.append(n)
        verdicts.append(_verdict(idx in winners.index, len(winners), mean, half))
    return block.assign(diff_mean=means, diff_ci95=halves, pairs=pairs, verdict=verdicts)


def _verdict(is_winner: bool, n_winners: int, mean: float, half: float) -> str:
    if is_winner:
        return BEST if n_winners == 1 else TIED
    if math.isnan(half):
        return "too few seeds"
    if mean - half <= 0 <= mean + half:
        return "not distinguishable"
    return "worse" if mean < 0 else "better on test"
