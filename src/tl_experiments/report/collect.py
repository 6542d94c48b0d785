"""Read the run folders of a sweep (see docs/run_folder.md) into records and a frame."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tl_experiments.errors import UserError
from tl_experiments.schema import RunRecord

__all__ = ["GROUP_KEYS", "NoRunsError", "Run", "find_runs", "run_settings", "runs_frame"]

# Everything that defines a comparison group; seed is left out so runs that differ
# only by seed are aggregated together.
GROUP_KEYS = ("model", "strategy", "data", "samples_per_class", "img_size")

_RUN_FILES = ("metrics.json", "error.json")

# Settings that never change a run's result (where it runs, what it writes afterwards),
# and the seed, over which runs are aggregated: a config key equal to one of these, or
# below it, is left out of a run's settings.
_NOT_SETTINGS = (
    "seed",
    "experiment",
    "task_name",
    "paths",
    "hydra",
    "threads",
    "cpu_lock_dir",
    "gpu_per_job",
    "gpu_count",
    "gpu_lock_dir",
    "skip_finished",
    "ckpt_path",
    "feature_cache",
    "analysis",
)


def is_setting(key: str) -> bool:
    """Whether a dotted config key can change a run's result (the seed aside)."""
    return not any(key == k or key.startswith(k + ".") for k in _NOT_SETTINGS)


def run_settings(run: Run) -> dict[str, str]:
    """Every setting of a run but its seed, as dotted keys and text values.

    From ``metrics.json``'s ``settings`` (the whole resolved config); runs written before
    it existed fall back to their command-line overrides.
    """
    settings = (run.metrics or {}).get("settings")
    if settings is None:
        settings = dict(o.lstrip("+~").split("=", 1) for o in run.overrides if "=" in o)
    return {k: str(v) for k, v in settings.items() if is_setting(k)}


class NoRunsError(UserError):
    """Raised when a sweep folder is missing or holds no run folders."""


@dataclass
class Run:
    """One run folder: its metrics (if it finished) or its error (if it failed)."""

    path: Path
    metrics: RunRecord | None = None  # metrics.json (schema.py)
    error: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.metrics is not None

    @property
    def checkpoint(self) -> Path | None:
        """The best checkpoint if the run kept one."""
        ckpt = self.path / "checkpoints" / "best.ckpt"
        return ckpt if ckpt.is_file() else None


def _read_overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return []
    return [str(item) for item in loaded] if isinstance(loaded, list) else []


def _read_run(run_dir: Path) -> Run:
    run = Run(path=run_dir, overrides=_read_overrides(run_dir))
    metrics_path, error_path = run_dir / "metrics.json", run_dir / "error.json"
    # metrics.json is written last and atomically, so when present it wins over a
    # stale error.json left by an earlier attempt in the same folder.
    path = metrics_path if metrics_path.is_file() else error_path
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        run.error = {"error": f"cannot read {path.name}: {exc}", "type": type(exc).__name__}
        return run
    if path == metrics_path and content.get("status", "ok") == "ok":
        run.metrics = content
    else:
        run.error = content
    return run


def find_runs(sweep_dir: Path | str) -> list[Run]:
    """Find every run folder below `sweep_dir` (recursively), sorted by path.

    A run folder is one that holds `metrics.json` (finished) or `error.json` (failed).

    Raises:
        NoRunsError: if the folder does not exist or holds no run folders.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise NoRunsError(
            f"Sweep folder '{sweep_dir}' does not exist; pass the folder of a multirun, "
            "e.g. logs/multirun/<date>/<time>."
        )
    run_dirs = {p.parent for name in _RUN_FILES for p in sweep_dir.rglob(name)}
    if not run_dirs:
        raise NoRunsError(
            f"No runs found in '{sweep_dir}' (no metrics.json or error.json below it); "
            "pass a folder written by 'python train.py -m ...'."
        )
    return [_read_run(d) for d in sorted(run_dirs)]


def runs_frame(runs: list[Run], root: Path | None = None) -> pd.DataFrame:
    """One row per finished run: its metrics, run folder, overrides and best checkpoint.

    Args:
        runs: runs from `find_runs`; failed runs are skipped.
        root: if given, the `run` column holds paths relative to it.
    """
    rows = []
    for run in runs:
        if not run.ok:
            continue
        row = {key: None for key in GROUP_KEYS} | run.metrics
        row["history"] = run.metrics.get("history") or []
        row["run"] = str(run.path.relative_to(root) if root else run.path)
        row["overrides"] = " ".join(run.overrides)
        row["settings"] = run_settings(run)
        row["checkpoint"] = str(run.checkpoint.resolve()) if run.checkpoint else None
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        # Nullable ints keep "null = all samples" as <NA> instead of turning 50 into 50.0.
        frame["samples_per_class"] = frame["samples_per_class"].astype("Int64")
    return frame
