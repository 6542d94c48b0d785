"""The WiSE-FT section of report.md: accuracy of the interpolated backbones along alpha
(mean ± 95% interval over seeds), and what picking alpha on validation gained over the
fine-tuned model (alpha = 1) on each test set, paired by seed. Reads metrics.json only."""

from __future__ import annotations

import math

from tl_experiments.report.analysis_tables import group_runs
from tl_experiments.report.collect import Run
from tl_experiments.report.table import mean_ci95

__all__ = ["render_wise_ft", "wise_ft_gains"]


def _pts(values: list[float]) -> str:
    mean, half = mean_ci95(values)
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f}" if math.isnan(half) else f"{100 * mean:.1f} ± {100 * half:.1f}"


def wise_ft_gains(curves: list[dict]) -> dict[str, list[float]]:
    """Per test set, each seed's accuracy at its validation-picked alpha minus at alpha 1."""
    gains: dict[str, list[float]] = {}
    for c in curves:
        pick, top = c["alphas"].index(c["best_alpha"]), c["alphas"].index(1.0)
        for name, accs in c["test_acc"].items():
            gains.setdefault(name, []).append(accs[pick] - accs[top])
    return gains


def _curve_table(groups: dict[str, list[dict]], names: list[str]) -> list[str]:
    header = ["Approach", "alpha", "Val acc (%)", *(f"{n} (%)" for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, curves in groups.items():
        for i, a in enumerate(curves[0]["alphas"]):
            cells = [label, f"{a:g}", _pts([c["val_acc"][i] for c in curves])]
            cells += [_pts([c["test_acc"][n][i] for c in curves]) for n in names]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _gain_table(groups: dict[str, list[dict]], names: list[str]) -> list[str]:
    header = ["Approach", "alpha picked (per seed)", *(f"{n} (pts)" for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, curves in groups.items():
        gains = wise_ft_gains(curves)
        cells = [label, ", ".join(f"{c['best_alpha']:g}" for c in curves)]
        cells += [_pts(gains[n]) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_wise_ft(runs: list[Run]) -> str:
    """The WiSE-FT section, or '' when no run has a curve (``metrics.json`` ``wise_ft``)."""
    groups = {
        label: [m["wise_ft"] for m in ms if m.get("wise_ft")]
        for label, ms in group_runs(runs).items()
    }
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return ""
    names = list(dict.fromkeys(n for cs in groups.values() for c in cs for n in c["test_acc"]))
    return "\n\n".join(
        [
            "## WiSE-FT: interpolating toward the pretrained backbone (docs/shift.md)",
            "Accuracy of `(1 - alpha) * pretrained + alpha * fine-tuned` backbones (the "
            "fine-tuned head at every alpha), mean ± 95% interval over seeds; alpha = 1 is "
            "the fine-tuned model.",
            "\n".join(_curve_table(groups, names)),
            "Alpha picked on validation (ties: the larger) minus alpha = 1, per test set, "
            "paired by seed, mean ± 95% interval: where the interval covers 0, "
            "interpolation did not measurably help or hurt.",
            "\n".join(_gain_table(groups, names)),
        ]
    )
