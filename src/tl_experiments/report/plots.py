"""Plots of a sweep: parameter cost, accuracy vs time, learning curves, data efficiency.

Figures are built with `matplotlib.figure.Figure` directly (the Agg canvas), so no
pyplot state or GUI backend is involved and nothing leaks between plots. Colour always
means strategy; when another key varies (model, samples per class, ...), plots get one
panel per value instead of one crowded axis.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tl_experiments.report.collect import GROUP_KEYS
from tl_experiments.report.markdown import format_count, format_key
from tl_experiments.report.table import varying_keys

__all__ = [
    "group_label",
    "plot_accuracy_vs_time",
    "plot_data_efficiency",
    "plot_learning_curves",
    "plot_trainable_params",
    "write_plots",
]

_SHORT_KEYS = {"samples_per_class": "n/class", "img_size": "px"}
# Above this max/min ratio a linear axis squashes the small values (feature extraction
# trains ~1% of the weights; a 10-shot run is ~50x faster than a full one): go log.
_LOG_RATIO = 20.0
_DPI = 120
_LABEL_SIZE = 10  # points
# A translucent white box keeps point labels legible where they cross error bars.
_LABEL_BOX = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8}


def group_label(group: pd.Series, keys: list[str]) -> str:
    """'strategy' followed by the other given group keys, e.g. 'full_ft (n/class=10)'."""
    extra = [f"{_SHORT_KEYS.get(k, k)}={format_key(k, group[k])}" for k in keys if k != "strategy"]
    return f"{group['strategy']} ({', '.join(extra)})" if extra else str(group["strategy"])


def _colors(strategies: list[str]) -> dict[str, tuple]:
    """One colour per strategy, the same in every plot of the report."""
    cmap = colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(sorted(set(strategies)))}


def _nan_to_zero(values: pd.Series | np.ndarray) -> np.ndarray:
    # errorbar() wants 0, not NaN, where a single seed gives no interval.
    return np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)


def _facets(data: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """Split `data` by the varying keys other than strategy: (panel title, rows)."""
    other = [k for k in keys if k != "strategy"]
    if not other:
        return [("", data)]
    parts = data.groupby(other, dropna=False, sort=False)
    return [
        (
            ", ".join(
                f"{_SHORT_KEYS.get(k, k)}={format_key(k, v)}"
                for k, v in zip(other, key, strict=True)
            ),
            part,
        )
        for key, part in parts
    ]


def _panels(n: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure with n panels (at most 3 per row) sharing the y axis."""
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    width = 7.5 if n == 1 else 5.0 * ncols
    fig = Figure(figsize=(width, 0.5 + 4.3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, list(axes[:n])


def plot_trainable_params(summary: pd.DataFrame, path: Path) -> bool:
    """Bar chart of trainable parameters per strategy (and model, if several).

    Returns:
        Whether the plot was written (False when no group has a parameter count).
    """
    data = summary.dropna(subset=["trainable_params"])
    if data.empty:
        return False
    by_model = data["model"].nunique(dropna=False) > 1
    bars = data.groupby(["model", "strategy"], sort=False, dropna=False)["trainable_params"]
    bars = bars.mean().sort_values()
    labels = [f"{s}\n{m}" if by_model else str(s) for m, s in bars.index]
    colors = _colors(data["strategy"].tolist())
    fig, (ax,) = _panels(1, "Trainable parameters per strategy")
    fig.set_figwidth(max(6.0, 1.5 * len(bars) + 1.5))
    rects = ax.bar(labels, bars.to_numpy(), color=[colors[s] for _, s in bars.index])
    ax.bar_label(rects, labels=[format_count(v) for v in bars], padding=2)
    if bars.max() / max(bars.min(), 1.0) > _LOG_RATIO:
        ax.set_yscale("log")
        ax.set_ylabel("trainable parameters (log scale)")
    else:
        ax.set_ylabel("trainable parameters")
    ax.margins(y=0.15)
    ax.tick_params(axis="x", labelrotation=20 if len(bars) > 4 else 0)
    fig.savefig(path, dpi=_DPI)
    return True


def _scatter_panel(ax: Axes, data: pd.DataFrame, colors: dict, max_params: float) -> np.ndarray:
    """Draw one panel's points and error bars; returns the marker radii in points."""
    x, y = data["train_seconds_mean"].to_numpy(), 100 * data["test_acc_mean"].to_numpy()
    # Times: the geometric mean's interval, asymmetric (report/table.py, geo_mean_ci95).
    low = _nan_to_zero(x - data["train_seconds_low"].to_numpy())
    xerr = np.vstack([low, _nan_to_zero(data["train_seconds_high"].to_numpy() - x)])
    yerr = 100 * _nan_to_zero(data["test_acc_ci95"])
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="none", ecolor="0.5", capsize=3, zorder=1)
    params = data["trainable_params"].fillna(0.0).to_numpy(dtype=float)
    # Marker area grows with sqrt(params) so a 3M-parameter model does not swamp the axis.
    sizes = 40 + 400 * np.sqrt(params / max(max_params, 1.0))
    edge = {"edgecolors": "black", "alpha": 0.8, "zorder": 4}
    ax.scatter(x, y, s=sizes, c=[colors[s] for s in data["strategy"]], **edge)
    if x.min() > 0 and x.max() / x.min() > _LOG_RATIO:
        ax.set_xscale("log")
    else:
        ax.set_xlim(left=0, right=1.3 * (x + xerr[1]).max())  # room for the labels
    ax.margins(y=0.12)
    ax.grid(alpha=0.3)
    return np.sqrt(sizes) / 2  # scatter sizes are areas in points^2


def _label_points(ax: Axes, data: pd.DataFrame, radii: np.ndarray) -> None:
    """Label each point right of its marker, one line lower where labels would collide.

    Collisions are judged in points from the current limits, so call this after every
    panel sharing the axis has its data (accuracy at the ceiling stacks points).
    """
    to_points = 72.0 / ax.figure.dpi
    height, placed = 1.5 * _LABEL_SIZE, []
    x, y = data["train_seconds_mean"].to_numpy(), 100 * data["test_acc_mean"].to_numpy()
    for i in np.argsort(-y):
        px, py = ax.transData.transform((x[i], y[i])) * to_points
        x0 = px + radii[i] + 3
        x1 = x0 + 0.6 * _LABEL_SIZE * len(data["strategy"].iloc[i])  # rough text width
        dy = 0.0
        while any(a < x1 and x0 < b and abs(py + dy - c) < height for a, b, c in placed):
            dy -= height
        placed.append((x0, x1, py + dy))
        line = {"arrowstyle": "-", "color": "0.5", "lw": 0.6} if dy else None
        ax.annotate(
            data["strategy"].iloc[i],
            (x[i], y[i]),
            xytext=(radii[i] + 3, dy),
            textcoords="offset points",
            va="center",
            fontsize=_LABEL_SIZE,
            bbox=_LABEL_BOX,
            arrowprops=line,
            zorder=3,
        )


def plot_accuracy_vs_time(summary: pd.DataFrame, path: Path) -> bool:
    """Test accuracy vs training seconds per group; point area grows with trainable params."""
    data = summary.dropna(subset=["train_seconds_mean", "test_acc_mean"])
    if data.empty:
        return False
    colors, facets = _colors(data["strategy"].tolist()), _facets(data, varying_keys(summary))
    title = "Test accuracy vs training time (bars: 95% CI over seeds, area: trainable params)"
    fig, axes = _panels(len(facets), title)
    radii = [
        _scatter_panel(ax, part, colors, float(data["trainable_params"].max()))
        for ax, (_, part) in zip(axes, facets, strict=True)
    ]
    for ax, (facet, part), r in zip(axes, facets, radii, strict=True):
        _label_points(ax, part, r)
        ax.set_title(facet, fontsize=10)
        ax.set_xlabel("training time (s, mean over seeds)")
    axes[0].set_ylabel("test accuracy (%)")
    fig.savefig(path, dpi=_DPI)
    return True


def _mean_curve(histories: list[list[dict]]) -> pd.Series:
    """Mean val accuracy per epoch over runs (runs that stopped early drop out)."""
    rows = [e for h in histories for e in h if "val_acc" in e and "epoch" in e]
    if not rows:
        return pd.Series(dtype=float)
    return pd.DataFrame(rows).groupby("epoch")["val_acc"].mean()


def plot_learning_curves(frame: pd.DataFrame, summary: pd.DataFrame, path: Path) -> bool:
    """Val accuracy per epoch, mean over seeds, one line per group (sorted by strategy)."""
    if frame.empty or "history" not in frame:
        return False
    colors, facets = _colors(frame["strategy"].tolist()), _facets(frame, varying_keys(summary))
    fig, axes = _panels(len(facets), "Learning curves (val accuracy, mean over seeds)")
    drawn = 0
    for ax, (facet, part) in zip(axes, facets, strict=True):
        for _, runs in part.groupby(list(GROUP_KEYS), dropna=False):
            curve = _mean_curve(runs["history"].tolist())
            strategy = runs["strategy"].iloc[0]
            if not curve.empty:
                ax.plot(
                    curve.index + 1,
                    100 * curve.to_numpy(),
                    marker="o",
                    markersize=3,
                    color=colors[strategy],
                    label=strategy,
                )
                drawn += 1
        ax.set_title(facet, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("val accuracy (%)")
    if drawn:
        fig.savefig(path, dpi=_DPI)
    return drawn > 0


def plot_data_efficiency(summary: pd.DataFrame, path: Path) -> bool:
    """Test accuracy vs training images per class, one line per strategy, log x.

    Only drawn when the sweep varies samples_per_class; a null samples_per_class
    (all images) sits at its measured train_size / num_classes.
    """
    if summary.empty or "samples_per_class" not in varying_keys(summary):
        return False
    data = summary.assign(x=summary["train_per_class"].fillna(summary["samples_per_class"]))
    data = data.dropna(subset=["x", "test_acc_mean"])
    keys = [k for k in varying_keys(summary) if k != "samples_per_class"]
    colors = _colors(data["strategy"].tolist())
    fig, (ax,) = _panels(1, "Data efficiency (bars: 95% CI over seeds)")
    for _, line in data.groupby(["strategy", *(k for k in keys if k != "strategy")], dropna=False):
        line = line.sort_values("x")
        ax.errorbar(
            line["x"].astype(float),
            100 * line["test_acc_mean"],
            yerr=100 * _nan_to_zero(line["test_acc_ci95"]),
            marker="o",
            capsize=3,
            color=colors[line["strategy"].iloc[0]],
            label=group_label(line.iloc[0], keys),
        )
    ax.set_xscale("log")
    # Tick exactly the measured sizes, in plain numbers rather than 10^k.
    ticks = data.groupby("x")["samples_per_class"].apply(lambda s: s.isna().any())
    ax.set_xticks(
        ticks.index, labels=[f"{x:g}" + ("\n(all)" if a else "") for x, a in ticks.items()]
    )
    ax.minorticks_off()
    ax.set_xlabel("training images per class (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=_DPI)
    return True


def write_plots(frame: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> list[str]:
    """Write every plot that has data into `out_dir`.

    Returns:
        The file names written, in report order.
    """
    if summary.empty:
        return []
    jobs = {
        "trainable_params.png": lambda p: plot_trainable_params(summary, p),
        "accuracy_vs_time.png": lambda p: plot_accuracy_vs_time(summary, p),
        "learning_curves.png": lambda p: plot_learning_curves(frame, summary, p),
        "data_efficiency.png": lambda p: plot_data_efficiency(summary, p),
    }
    return [name for name, plot in jobs.items() if plot(out_dir / name)]
