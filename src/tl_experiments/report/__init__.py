"""Sweep report: read run folders, aggregate over seeds, write a table and plots.

Reads only what runs wrote (docs/run_folder.md); no Hydra, no torch.
"""

from tl_experiments.report.collect import GROUP_KEYS, NoRunsError, Run, find_runs, runs_frame
from tl_experiments.report.markdown import (
    render_failed,
    render_report,
    render_selection,
    render_table,
)
from tl_experiments.report.paired import compare_to_winner, select_settings
from tl_experiments.report.plots import write_plots
from tl_experiments.report.table import (
    LOW_GAP,
    MODERATE_GAP,
    label_settings,
    mean_ci95,
    overfitting_label,
    summarize,
)
from tl_experiments.report.write import Report, compare_sweep, write_report

__all__ = [
    "GROUP_KEYS",
    "LOW_GAP",
    "MODERATE_GAP",
    "NoRunsError",
    "Report",
    "Run",
    "compare_sweep",
    "compare_to_winner",
    "label_settings",
    "select_settings",
    "find_runs",
    "mean_ci95",
    "overfitting_label",
    "render_failed",
    "render_report",
    "render_selection",
    "render_table",
    "runs_frame",
    "summarize",
    "write_plots",
    "write_report",
]
