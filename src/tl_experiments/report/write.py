"""Build the whole sweep report: read run folders, aggregate, write md, csv and plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tl_experiments.report.advice_check import read_advice
from tl_experiments.report.collect import GROUP_KEYS, Run, find_runs, runs_frame
from tl_experiments.report.markdown import render_report
from tl_experiments.report.paired import compare_to_winner, select_settings
from tl_experiments.report.plots import write_plots
from tl_experiments.report.table import label_settings, summarize

__all__ = ["Report", "compare_sweep", "write_report"]


@dataclass
class Report:
    """What `write_report` read and wrote."""

    runs: list[Run]
    frame: pd.DataFrame  # one row per finished run
    summary: pd.DataFrame  # one row per group (every setting), best mean val accuracy first
    comparison: pd.DataFrame  # each strategy at its selected setting, paired with the winner
    markdown: str
    files: list[Path]


def compare_sweep(sweep_dir: Path | str) -> pd.DataFrame:
    """The comparison of a sweep's runs (each strategy at its selected setting, paired with
    the validation winner), without writing anything."""
    return compare_to_winner(select_settings(summarize(runs_frame(find_runs(sweep_dir)))))


def write_report(
    sweep_dir: Path | str, out_dir: Path | str | None = None, plots: bool = True
) -> Report:
    """Read every run folder below `sweep_dir` and write report.md, report.csv and plots.

    Args:
        sweep_dir: a multirun folder (or any folder above run folders).
        out_dir: where to write; defaults to `sweep_dir`.
        plots: also draw the PNG plots (a sweep's report refreshed after each job draws
            them only once the last job is in).

    Raises:
        NoRunsError: if `sweep_dir` is missing or holds no run folders.
    """
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    runs = find_runs(sweep_dir)
    frame = runs_frame(runs, root=sweep_dir)
    summary = summarize(frame)
    comparison = compare_to_winner(select_settings(summary))
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = _selected_runs(frame, comparison)  # the runs of the selected settings
    drawn = write_plots(shown, comparison, out_dir) if plots else []
    advice = read_advice(sweep_dir)
    markdown = render_report(comparison, summary, shown, runs, sweep_dir, drawn, advice)
    (out_dir / "report.md").write_text(markdown)
    summary.drop(columns=["test_by_seed"], errors="ignore").to_csv(
        out_dir / "report.csv", index=False
    )
    files = [out_dir / name for name in ("report.md", "report.csv", *drawn)]
    return Report(runs, frame, summary, comparison, markdown, files)


def _selected_runs(frame: pd.DataFrame, comparison: pd.DataFrame) -> pd.DataFrame:
    """The runs of the selected settings (the ones the plots show)."""
    if frame.empty:
        return frame
    frame = label_settings(frame)
    keys = [*GROUP_KEYS, "setting"]
    chosen = {tuple(map(str, row)) for row in comparison[keys].itertuples(index=False)}
    keep = [tuple(map(str, row)) in chosen for row in frame[keys].itertuples(index=False)]
    return frame[keep]
