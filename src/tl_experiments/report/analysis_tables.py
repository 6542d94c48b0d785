"""Report tables for the analysis fields of metrics.json: drift, CKA, forgetting, shifts.

Runs written before the analysis existed (or with ``analysis.enabled=false``) have none of
these fields; the section is then left out. Mean over seeds; shifted accuracy also gets the
95% interval. Reads only metrics.json (no torch).
"""

from __future__ import annotations

import math

from tl_experiments.report.collect import GROUP_KEYS, Run
from tl_experiments.report.table import mean_ci95

__all__ = ["group_runs", "render_analysis"]


def group_runs(runs: list[Run]) -> dict[str, list[dict]]:
    """Finished runs by group label: the strategy, plus the other group keys that vary."""
    ok = [r.metrics for r in runs if r.ok]
    varying = [k for k in GROUP_KEYS if k != "strategy" and len({str(m.get(k)) for m in ok}) > 1]
    groups: dict[str, list[dict]] = {}
    for m in ok:
        extra = ", ".join(f"{k}={m.get(k)}" for k in varying)
        groups.setdefault(
            f"{m.get('strategy')} ({extra})" if extra else str(m.get("strategy")), []
        ).append(m)
    return groups


def _mean(values: list) -> str:
    mean, _ = mean_ci95([v for v in values if v is not None])
    return "–" if math.isnan(mean) else f"{mean:.3f}"


def _pct(values: list) -> str:
    mean, half = mean_ci95([v for v in values if v is not None])
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f}" if math.isnan(half) else f"{100 * mean:.1f} ± {100 * half:.1f}"


def _per_stage(groups: dict[str, list[dict]], field: str, extra: str | None = None) -> str:
    stages = list(
        dict.fromkeys(s for ms in groups.values() for m in ms for s in (m.get(field) or {}))
    )
    if not stages:
        return ""
    header = ["Approach", *([extra.replace("_", " ")] if extra else []), *stages]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, ms in groups.items():
        cells = [label, *([_pct([m.get(extra) for m in ms])] if extra else [])]
        cells += [_mean([(m.get(field) or {}).get(s) for m in ms]) for s in stages]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shifts(groups: dict[str, list[dict]]) -> str:
    names = list(
        dict.fromkeys(
            n
            for ms in groups.values()
            for m in ms
            for n in (m.get("shift_acc") or {})
            if n != "clean"
        )
    )
    if not names:
        return ""
    header = ["Approach", "Test acc (%)", "Clean subset (%)", *(f"{n} (%)" for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, ms in groups.items():
        acc = [m.get("shift_acc") or {} for m in ms]
        cells = [label, _pct([m.get("test_acc") for m in ms]), _pct([a.get("clean") for a in acc])]
        cells += [_pct([a.get(n) for a in acc]) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_analysis(runs: list[Run]) -> str:
    """The analysis section of report.md, or '' when no run has analysis fields."""
    groups = group_runs(runs)
    drift = _per_stage(groups, "drift", extra="imagenet_agreement")
    cka = _per_stage(groups, "cka")
    shifts = _shifts(groups)
    if not (drift or cka or shifts):
        return ""
    parts = ["## Forgetting, drift and domain shift (docs/shift.md)"]
    if drift:
        parts += [
            "Weight drift ||w - w0|| / ||w0|| per stage (0 = unchanged), mean over seeds; "
            "ImageNet agreement (%): the original ImageNet head on the fine-tuned "
            "features vs the original model, on packaged photos.",
            drift,
        ]
    if cka:
        parts += [
            "Linear CKA between starting and trained features per stage (1 = same "
            "representation), on validation images, mean over seeds.",
            cka,
        ]
    if shifts:
        parts += [
            "Accuracy on shifted copies of the test split; 'clean subset' is the same "
            "images unshifted (the baseline for the shifted columns).",
            shifts,
        ]
    return "\n\n".join(parts)
