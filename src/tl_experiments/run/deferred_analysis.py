"""A finished run's analysis, later: a sweep's tables first, the analysis after them.

``analysis.defer=true`` writes ``metrics.json`` with ``analysis_pending: true`` and no
analysis. The same job run again with ``analysis.defer=false`` rebuilds the run from its
config (a tuned run's selected setting), loads its ``checkpoints/best.ckpt`` through
Lightning, analyses it as the run itself would have (docs/shift.md), and rewrites
``metrics.json`` with the analysis. ``scripts/main.sh`` does both passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tl_experiments.errors import UserError
from tl_experiments.run.outputs import write_json_atomic
from tl_experiments.schema import RunRecord

__all__ = ["analyse_pending", "analysis_pending"]


def analysis_pending(record: dict, cfg: DictConfig) -> bool:
    """Whether this finished run waits for its analysis and this call should run it."""
    wanted = cfg.analysis.enabled and not cfg.analysis.get("defer")
    return bool(record.get("analysis_pending")) and bool(wanted)


def analyse_pending(
    cfg: DictConfig,
    out: Path,
    record: dict,
    assemble: Callable[..., Any],
    analyse: Callable[[DictConfig, Any, dict], bool],
) -> RunRecord:
    """Analyse the finished run in ``out`` and add the analysis to its ``metrics.json``;
    ``cfg`` is the run's config at the setting it tested (a tuned run's selected one)."""
    best = out / "checkpoints" / "best.ckpt"
    if not best.is_file():
        raise UserError(
            f"{out} waits for its analysis but has no checkpoints/best.ckpt; run the job "
            "again with skip_finished=false to retrain it."
        )
    print(f"Analysing the finished run in {out} (analysis.defer=false).", flush=True)
    begin = time.perf_counter()
    parts = assemble(cfg, out)
    parts.trainer.validate(parts.module, datamodule=parts.dm, ckpt_path=str(best), verbose=False)
    interrupted = analyse(cfg, parts, record)
    if interrupted:
        raise KeyboardInterrupt(f"Interrupted during the analysis of {out}; run it again.")
    record.pop("analysis_pending", None)
    record["analysis_wall_seconds"] = round(time.perf_counter() - begin, 3)
    write_json_atomic(record, out / "metrics.json")
    return record
