"""What the tuned runs of a group chose (``tune.enabled``: metrics.json's ``tuning`` and
``selected``), for the table's *Selected* column and the report's first line."""

from __future__ import annotations

import pandas as pd

__all__ = ["render_tuned", "tuning_columns"]


def _name(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def tuning_columns(runs: pd.DataFrame) -> dict:
    """``selected`` (each chosen setting with its seeds), ``tried`` and ``stopped`` (candidate
    runs, summed over seeds); empty text and zeros for runs that were not tuned."""
    if "tuning" not in runs:
        return {"selected": "", "tried": 0, "stopped": 0, "tuned_runs": 0}
    seeds: dict[str, list[int]] = {}
    tried = stopped = tuned = 0
    for _, run in runs.iterrows():
        record = run["tuning"]
        if not isinstance(record, dict):
            continue
        tuned += 1
        tried += int(record.get("n_candidates", 0))
        stopped += int(record.get("n_stopped", 0))
        seeds.setdefault(_name(run["selected"] or {}), []).append(int(run["seed"]))
    ranked = sorted(seeds.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    text = "; ".join(
        f"{k} (seed{'s' if len(v) > 1 else ''} {','.join(map(str, sorted(v)))})" for k, v in ranked
    )
    return {"selected": text, "tried": tried, "stopped": stopped, "tuned_runs": tuned}


def render_tuned(comparison: pd.DataFrame) -> str | None:
    """The report's first line for a comparison whose runs searched their own grids; None
    when no run did."""
    if "tuned_runs" not in comparison or not (comparison["tuned_runs"] > 0).any():
        return None
    runs, tried = int(comparison["tuned_runs"].sum()), int(comparison["tried"].sum())
    stopped = int(comparison["stopped"].sum())
    untuned = comparison.loc[comparison["tuned_runs"] < comparison["n"], "strategy"]
    line = (
        "**Tuned on validation, in every run**: each strategy searched its own grid "
        "(`search:` in `conf/strategy/<name>.yaml`) on each seed's training images, by "
        f"successive halving: {tried} candidate runs over {runs} runs, {stopped} of them "
        "stopped early. Each run's setting was selected on validation accuracy alone "
        "(*Selected* column) and only it was tested, once."
    )
    if len(untuned):
        line += f" Not tuned (one setting): {', '.join(map(str, untuned))}."
    return line
