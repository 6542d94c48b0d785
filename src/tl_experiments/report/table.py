"""Aggregate finished runs over seeds: mean and 95% interval per comparison group."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tl_experiments.report.collect import GROUP_KEYS
from tl_experiments.report.tuning import tuning_columns

__all__ = [
    "geo_mean_ci95",
    "label_settings",
    "LOW_GAP",
    "MODERATE_GAP",
    "mean_ci95",
    "MIN_SEEDS",
    "overfitting_label",
    "seed_interval",
    "summarize",
    "varying_keys",
]

# Train-val gap (train_acc - val_acc, accuracy as a fraction) at which the label
# changes. Rules of thumb, matching the lesson's "overfitting risk" column:
# a few points is ordinary noise on a small val split, over 15 points is memorising.
LOW_GAP = 0.05
MODERATE_GAP = 0.15

# Metrics reported as mean and 95% interval over seeds. Times are positive and their spread
# is multiplicative (a job alone on the machine gets twice the threads), so times are
# summarised on the log scale instead (``geo_mean_ci95``): an interval that never goes below 0.
_CI_METRICS = ("best_val_acc", "test_acc")
_TIME_METRICS = ("train_seconds", "epoch_seconds")
# What a strategy costs besides time, mean over seeds (NaN for runs that predate them).
_COST_METRICS = ("checkpoint_bytes", "step_seconds", "peak_memory_mb")


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the Student-t 95% interval of the mean.

    The half-width is t_{0.975, n-1} * sd / sqrt(n) with the sample sd (ddof=1);
    it is NaN for a single value, where no interval can be estimated.
    """
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, math.nan
    t = float(stats.t.ppf(0.975, arr.size - 1))
    return mean, t * float(arr.std(ddof=1)) / math.sqrt(arr.size)


# Fewer seeds than this cannot separate anything: t_{0.975,1} = 12.7 (2 seeds), and two equal
# values give a zero-width interval by chance, which would read as certainty.
MIN_SEEDS = 3


def seed_interval(values: Sequence[float]) -> tuple[float, float]:
    """:func:`mean_ci95` over seeds, with no interval (NaN) where fewer than ``MIN_SEEDS``
    values are all equal: their zero spread is chance, not a measured certainty."""
    mean, half = mean_ci95(values)
    n = sum(v is not None and not math.isnan(v) for v in values)
    # "Equal" up to float rounding: 10/13 - 11/13 and 11/13 - 12/13 differ in the last bit.
    return (mean, math.nan) if half < 1e-9 and n < MIN_SEEDS else (mean, half)


def geo_mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """Geometric mean of positive values and its 95% interval: the Student-t interval of the
    mean of the logs, taken back with exp. Returns (centre, low, high); low and high are NaN
    for a single value."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr) & (arr > 0)]
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    mean, half = mean_ci95(np.log(arr))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def overfitting_label(gap: float) -> str:
    """'low', 'moderate' or 'high' from a mean train-val gap; '?' when unknown."""
    if gap is None or math.isnan(gap):
        return "?"
    if gap < LOW_GAP:
        return "low"
    return "moderate" if gap < MODERATE_GAP else "high"


def _summarize_group(runs: pd.DataFrame) -> dict[str, float | int | str]:
    row: dict[str, float | int | str] = {"n": len(runs)}
    row["trainable_params"] = float(runs["trainable_params"].mean())
    for metric in _CI_METRICS:
        row[f"{metric}_mean"], row[f"{metric}_ci95"] = seed_interval(runs[metric].tolist())
    for metric in _TIME_METRICS:
        centre, low, high = geo_mean_ci95(runs[metric].tolist())
        row[f"{metric}_mean"], row[f"{metric}_low"], row[f"{metric}_high"] = centre, low, high
    row["train_val_gap_mean"] = mean_ci95(runs["train_val_gap"].tolist())[0]
    for metric in _COST_METRICS:
        row[metric] = float(runs[metric].mean())
    row["overfitting"] = overfitting_label(row["train_val_gap_mean"])
    row |= tuning_columns(runs)  # what tuned runs selected (tune.enabled)
    # Training images per class actually used; also defined when samples_per_class is
    # null (all images), so data-efficiency plots can place that group on the x axis.
    row["train_per_class"] = float((runs["train_size"] / runs["num_classes"]).mean())
    # The run to keep from this group: highest best_val_acc (first one if all unknown).
    val = runs["best_val_acc"]
    best = runs.loc[val.idxmax()] if val.notna().any() else runs.iloc[0]
    for column in ("run", "overrides", "checkpoint"):
        row[f"best_{column}"] = best.get(column)
    return row


# Settings that say which data and model a run measured: when they vary in a sweep, the
# runs answer different questions, so they join the data or model column (never pooled,
# never "tuned" over). Every other varying setting is a hyperparameter (``setting``).
_IDENTITY = (
    "data.root",
    "data.source",
    "data.source_args",
    "data.split_seed",
    "data.val_fraction",
    "data.test_fraction",
    "model.arch",
    "model.weights",
    "model.weights_file",
)
# Settings already in a group key, in config and in override form.
_IN_GROUP_KEYS = {"strategy", "strategy.name", "data", "data.name", "model", "model.name"}
_IN_GROUP_KEYS |= {"data.samples_per_class", "model.img_size"}


def _is_identity(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in _IDENTITY)


def _recorded(settings: list[dict]) -> list[str]:
    """Keys every one of these runs records, minus those already in a group key.

    A key a newer version added (absent from older runs' metrics.json, or from runs that
    recorded only their overrides) cannot split runs that otherwise agree."""
    common = set.intersection(*(set(x) for x in settings)) if settings else set()
    return sorted(common - _IN_GROUP_KEYS)


def _varying(settings: list[dict], keys: list[str]) -> list[str]:
    return [k for k in keys if len({s.get(k) for s in settings}) > 1]


def label_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs keyed by every setting but the seed.

    Varying data and model settings (a second ``data.root``, other weights) are appended to
    the ``data`` / ``model`` column; the other settings that vary among runs of one group
    of GROUP_KEYS form its ``setting`` text (``strategy.lr=0.003, ...``, empty when none).
    """
    frame = frame.copy()
    settings = list(frame["settings"]) if "settings" in frame else [{}] * len(frame)
    by_index = dict(zip(frame.index, settings, strict=True))
    varying = _varying(settings, _recorded(settings))
    for column in ("data", "model"):
        ident = [k for k in varying if _is_identity(k) and k.startswith(column + ".")]
        if ident:
            frame[column] = [
                f"{name}[{', '.join(f'{k}={s.get(k)}' for k in ident)}]"
                for name, s in zip(frame[column], settings, strict=True)
            ]
    frame["setting"] = ""
    for _, runs in frame.groupby(list(GROUP_KEYS), dropna=False, sort=False):
        local = [by_index[i] for i in runs.index]
        own = [k for k in _varying(local, _recorded(local)) if not _is_identity(k)]
        for i in runs.index:
            frame.loc[i, "setting"] = ", ".join(f"{k}={by_index[i].get(k)}" for k in own)
    return frame


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group (every setting but the seed), best mean val accuracy first.

    When another key varies too (e.g. samples_per_class), rows come in blocks of that
    key, best first within each block.

    Args:
        frame: one row per finished run, from `runs_frame`.

    Returns:
        The group keys, `n` (seeds), mean trainable parameters, `<metric>_mean` and
        `<metric>_ci95` (half-width) for best val accuracy and test accuracy; the geometric
        mean of training seconds with its interval (`train_seconds_mean`, `_low`, `_high`);
        the mean train-val gap and its overfitting label, `train_per_class`
        (training images per class), and the group's best run (`best_run`,
        `best_overrides`, `best_checkpoint`).
    """
    if frame.empty:
        return pd.DataFrame(columns=[*GROUP_KEYS, "setting", "n"])
    frame = _numeric_metrics(label_settings(frame))
    rows = []
    keys = [*GROUP_KEYS, "setting"]
    # dropna=False: samples_per_class is <NA> for "all samples", a real group.
    for key, runs in frame.groupby(keys, dropna=False, sort=False):
        row = {**dict(zip(keys, key, strict=True)), **_summarize_group(runs)}
        row["seeds"] = tuple(sorted(runs["seed"].dropna().astype(int)))
        row["test_by_seed"] = dict(zip(runs["seed"].astype(int), runs["test_acc"], strict=True))
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary["samples_per_class"] = summary["samples_per_class"].astype("Int64")
    # Blocks of the other varying keys (e.g. samples_per_class 10, 50, all), and
    # within a block the best mean val accuracy first: the rows a reader compares.
    blocks = [k for k in varying_keys(summary) if k != "strategy"]
    order = [*blocks, "best_val_acc_mean", "strategy", "setting"]
    ascending = [True] * len(blocks) + [False, True, True]
    return summary.sort_values(order, ascending=ascending, na_position="last", ignore_index=True)


def _numeric_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    # Older or partial metrics.json files may lack a field or hold null: read as NaN.
    frame = frame.copy()
    if "peak_memory_mb" in frame:  # the GPU's peak where a GPU ran, else the process's
        frame["peak_memory_mb"] = [_peak(v) for v in frame["peak_memory_mb"]]
    numeric = ("trainable_params", "train_val_gap", "train_size", "num_classes")
    for column in (*numeric, *_CI_METRICS, *_TIME_METRICS, *_COST_METRICS):
        values = frame.get(column, math.nan)
        frame[column] = pd.to_numeric(values, errors="coerce")
    return frame


def _peak(value) -> float:
    if not isinstance(value, dict):
        return math.nan
    found = value.get("gpu") if value.get("gpu") is not None else value.get("cpu_rss")
    return math.nan if found is None else float(found)


def varying_keys(summary: pd.DataFrame) -> list[str]:
    """Group keys that take more than one value in the sweep (NA counts as a value)."""
    return [k for k in GROUP_KEYS if summary[k].nunique(dropna=False) > 1]
