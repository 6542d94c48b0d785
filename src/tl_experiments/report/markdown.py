"""Render the sweep report as markdown: comparison table, best run, failed runs."""

from __future__ import annotations

import math
from math import nan
from pathlib import Path

import pandas as pd

from tl_experiments.report.advice_check import render_advice_check
from tl_experiments.report.analysis_tables import render_analysis
from tl_experiments.report.caveats import render_caveats
from tl_experiments.report.collect import GROUP_KEYS, Run
from tl_experiments.report.paired import BEST, TIED
from tl_experiments.report.table import LOW_GAP, MODERATE_GAP, varying_keys
from tl_experiments.report.tuning import render_tuned
from tl_experiments.report.unfreezing import render_unfreezing
from tl_experiments.report.wise_ft import render_wise_ft

__all__ = [
    "format_count",
    "format_key",
    "format_mean_ci",
    "format_time_ci",
    "render_failed",
    "render_report",
    "render_selection",
    "render_table",
]

_KEY_TITLES = {
    "model": "Model",
    "data": "Data",
    "samples_per_class": "Samples/class",
    "img_size": "Image size",
}


def format_count(value: float) -> str:
    """A parameter count in three significant digits: 3.38M, 12.8K, 512."""
    if value is None or math.isnan(value):
        return "?"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def format_mean_ci(
    mean: float,
    half_width: float,
    scale: float = 1.0,
    digits: int = 1,
    bounds: tuple[float, float] | None = None,
) -> str:
    """'mean ± half-width' in the given units; just the mean when there is no interval.

    With ``bounds`` (what the value can be: accuracy 0..1, a difference of two -1..1), an
    interval that crosses one is printed clipped, as 'mean (low–high)'.
    """
    if math.isnan(mean):
        return "?"
    text = f"{mean * scale:.{digits}f}"
    if math.isnan(half_width):
        return text
    low, high = mean - half_width, mean + half_width
    if bounds is None or bounds[0] <= low and high <= bounds[1]:
        return f"{text} ± {half_width * scale:.{digits}f}"
    low, high = max(low, bounds[0]) * scale, min(high, bounds[1]) * scale
    return f"{text} ({low:.{digits}f}–{high:.{digits}f})"


def format_time_ci(centre: float, low: float, high: float) -> str:
    """Seconds as 'geometric mean (low-high)', two significant digits for the interval."""
    if math.isnan(centre):
        return "?"
    text = f"{centre:.1f}"
    return text if math.isnan(low) else f"{text} ({_seconds(low)}–{_seconds(high)})"


def _seconds(value: float) -> str:
    # Two significant digits, without exponents: what a reader compares at a glance.
    if value < 0.1:
        return "<0.1"
    return f"{value:.2g}" if value < 100 else f"{value:,.0f}"


def format_key(key: str, value: object) -> str:
    """A group key's value as text; a null samples_per_class means every training image."""
    if pd.isna(value):
        return "all" if key == "samples_per_class" else "?"
    return str(value)


def render_table(summary: pd.DataFrame) -> str:
    """The lesson's comparison table, measured: one row per group, best first.

    With the columns of :func:`compare_to_winner` (a comparison) it adds the paired
    difference to the validation winner and its verdict; with settings that vary (a tuned
    sweep, or the table of every setting) it adds the setting.
    """
    keys = [k for k in varying_keys(summary) if k != "strategy"]
    settings = "setting" in summary and (summary["setting"] != "").any()
    paired = "verdict" in summary
    header = ["Approach", *(_KEY_TITLES[k] for k in keys)]
    header += ["Setting"] if settings else []
    selected = "selected" in summary and (summary["selected"] != "").any()
    header += ["Selected on val (tried/stopped early)"] if selected else []
    # Cost columns where runs recorded them (metrics.json of older runs lacks them).
    costs = "checkpoint_bytes" in summary and summary["checkpoint_bytes"].notna().any()
    header += ["Trainable params", "Train time (s)"]
    header += ["s/epoch", "ms/step", "Ckpt (MiB)", "Peak mem (MiB)"] if costs else []
    header += ["Val acc (%)", "Test acc (%)"]
    header += ["Test vs best (pts, paired)", "Verdict"] if paired else []
    header += ["Train-val gap (pts)", "Overfitting", "Seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, g in summary.iterrows():
        cells = [str(g["strategy"]), *(format_key(k, g[k]) for k in keys)]
        cells += [f"`{g['setting']}`" if g["setting"] else "(as shipped)"] if settings else []
        cells += [f"{g['selected']} ({g['tried']}/{g['stopped']})"] if selected else []
        cells += [
            format_count(g["trainable_params"]),
            format_time_ci(*(g[f"train_seconds_{k}"] for k in ("mean", "low", "high"))),
        ]
        cells += _cost_cells(g) if costs else []
        cells += [
            format_mean_ci(g["best_val_acc_mean"], g["best_val_acc_ci95"], 100, bounds=(0, 1)),
            format_mean_ci(g["test_acc_mean"], g["test_acc_ci95"], 100, bounds=(0, 1)),
        ]
        if paired:
            diff = format_mean_ci(g["diff_mean"], g["diff_ci95"], 100, bounds=(-1, 1))
            cells += ["–" if g["verdict"] in (BEST, TIED) else diff, g["verdict"]]
        cells += [
            format_mean_ci(g["train_val_gap_mean"], math.nan, scale=100),
            g["overfitting"],
            str(g["n"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cost_cells(g: pd.Series) -> list[str]:
    """Seconds per epoch, milliseconds per step, checkpoint and peak memory in MiB."""
    return [
        format_time_ci(*(g.get(f"epoch_seconds_{k}", nan) for k in ("mean", "low", "high"))),
        _num(g.get("step_seconds", nan), 1000, 0),
        _num(g.get("checkpoint_bytes", nan), 2**-20, 2),
        _num(g.get("peak_memory_mb", nan), 1, 0),
    ]


def _num(value: float, scale: float, digits: int) -> str:
    return "?" if value is None or math.isnan(value) else f"{value * scale:.{digits}f}"


def render_selection(comparison: pd.DataFrame) -> str:
    """Whether the comparison is tuned on validation or a fixed recipe, in one paragraph."""
    tuned = render_tuned(comparison)  # each run searched its own grid (tune.enabled)
    if tuned is not None:
        return tuned
    tried = comparison["n_settings"].astype(int)
    if (tried <= 1).all():
        return (
            "**Fixed recipe** (not tuned): every strategy ran with one setting, so this "
            "ranks these recipes, not the strategies at their best; `tune.enabled=true` "
            "tunes each strategy on validation in every run (docs/results.md)."
        )
    return (
        "**Tuned on validation**: each strategy at the setting with the best mean "
        f"validation accuracy over seeds, out of {_span(tried)} settings tried "
        "(every setting is in the table below); test accuracy is read once, for the "
        "selected setting."
    )


def _span(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return str(low) if low == high else f"{low}-{high}"


def _render_reading(comparison: pd.DataFrame) -> str:
    return (
        "Values are mean ± 95% Student-t interval over seeds (none with one seed, or with "
        "equal values from fewer than 3); an interval beyond 0 or 100% is shown clipped, as "
        "(low–high); "
        "train time is the geometric mean (low–high of its 95% interval, on the log scale: "
        "times spread by factors, with the load on the machine). "
        "*Test vs best* is this row's test accuracy minus the validation winner's, paired "
        "by seed (same seed = same training images; validation and test are the same for "
        "every run), with its 95% interval; *not distinguishable* means that interval "
        "covers 0, so the data cannot tell the two apart. "
        f"Overfitting from the mean train-val gap: low < {LOW_GAP * 100:g} pts, "
        f"moderate < {MODERATE_GAP * 100:g} pts, else high."
    )


def _render_constants(summary: pd.DataFrame) -> str:
    varying = varying_keys(summary)
    fixed = [f"{k}={format_key(k, summary[k].iloc[0])}" for k in GROUP_KEYS if k not in varying]
    return f"Same in every run: {', '.join(fixed)}." if fixed else ""


def _render_best(comparison: pd.DataFrame) -> str:
    winners = comparison[comparison["verdict"].isin([BEST, TIED])]
    if winners.empty:
        return "No run finished, so there is no best run."
    lines = []
    if (winners["verdict"] == TIED).any():
        names = ", ".join(winners["strategy"].astype(str))
        lines.append(f"No single winner: {names} tie on mean validation accuracy.")
    for _, best in winners.iterrows():
        ckpt = best["best_checkpoint"]
        where = ", ".join(f"{k}={format_key(k, best[k])}" for k in GROUP_KEYS if k != "strategy")
        setting = f", {best['setting']}" if best["setting"] else ""
        lines += [
            f"Best on validation: **{best['strategy']}** ({where}{setting}).",
            f"- best run: `{best['best_run']}`",
            f"- overrides: `{best['best_overrides'] or '(none)'}`",
            f"- checkpoint: `{ckpt}`"
            if isinstance(ckpt, str)
            else "- checkpoint: none kept (no checkpoints/best.ckpt)",
        ]
    return "\n".join(lines)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def render_failed(runs: list[Run], root: Path) -> str:
    """A table of failed runs: folder, overrides, error type and message."""
    failed = [r for r in runs if not r.ok]
    if not failed:
        return "None."
    lines = ["| Run | Overrides | Error type | Error |", "|---|---|---|---|"]
    for run in failed:
        error = run.error or {}
        message = str(error.get("error", "(no message)")).replace("|", "\\|").replace("\n", " ")
        overrides = " ".join(run.overrides) or "(none)"
        lines.append(
            f"| `{run.path.relative_to(root)}` | `{overrides}` | "
            f"{error.get('type', '?')} | {message} |"
        )
    return "\n".join(lines)


def render_report(
    comparison: pd.DataFrame,
    summary: pd.DataFrame,
    frame: pd.DataFrame,
    runs: list[Run],
    root: Path,
    plots: list[str],
    advice: dict | None = None,
) -> str:
    """The whole report.md: the comparison (each strategy at its selected setting, paired
    with the winner), every setting when there were several, how to read them, the best
    run, the advisor's pick checked (when the sweep folder holds an ``advice.json``),
    failed runs, plots."""
    n_ok = sum(r.ok for r in runs)
    # The analysis sections show the selected settings' runs (all runs of a fixed recipe).
    shown = set(frame["run"]) if "run" in frame else set()
    selected = [r for r in runs if r.ok and _relative(r.path, root) in shown]
    empty = comparison.empty
    tuned = not empty and (comparison["n_settings"] > 1).any()
    parts = [
        f"# Sweep report: `{root}`",
        f"{n_ok} finished run(s), {len(runs) - n_ok} failed, {len(summary)} group(s).",
        "## Comparison",
        "" if empty else render_selection(comparison),
        render_table(comparison) if not empty else "No finished runs.",
        "" if empty else render_caveats(comparison, frame),
        "" if empty else _render_constants(comparison),
        "" if empty else _render_reading(comparison),
        *(["## Every setting tried", render_table(summary)] if tuned else []),
        render_unfreezing(frame),
        render_analysis(selected),  # empty when no run measured drift or shifts
        render_wise_ft(selected),  # empty when no run has a WiSE-FT curve
        "## Best run",
        "No run finished, so there is no best run." if empty else _render_best(comparison),
        *(
            ["## Advisor: predict, then verify", render_advice_check(comparison, advice)]
            if advice is not None
            else []
        ),
        "## Failed runs",
        render_failed(runs, root),
    ]
    if plots:
        parts += ["## Plots", "\n\n".join(f"![{Path(p).stem}]({p})" for p in plots)]
    return "\n\n".join(p for p in parts if p) + "\n"
