"""A job's facts from Hydra's runtime state (``HydraConfig``): an entry point reads them
once and passes plain values on, so ``run/`` and the other libraries never ask Hydra."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

if TYPE_CHECKING:  # run/ imports torch, which a multirun's launcher process skips
    from tl_experiments.run.jobs import JobInfo

__all__ = ["ddp_children_run_this_job_only", "multirun", "task_overrides", "this_job"]


def this_job() -> JobInfo:
    """This job as plain values: its name (Hydra's ``override_dirname``), its overrides and
    how many jobs the launcher runs side by side; a call from Python is a single run."""
    from tl_experiments.run.jobs import JobInfo

    if not HydraConfig.initialized():
        return JobInfo()
    hydra_cfg = HydraConfig.get()
    launcher = hydra_cfg.launcher
    n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    return JobInfo(
        name=hydra_cfg.job.override_dirname,
        overrides=tuple(hydra_cfg.overrides.task),
        parallel_jobs=int(n_jobs) if n_jobs and n_jobs >= 1 else None,
    )


def multirun() -> bool:
    """Whether this process runs a job of a multirun (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def task_overrides() -> list[str]:
    """The job's command-line overrides (none when called from Python)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def ddp_children_run_this_job_only(out: Path) -> None:
    """Make Lightning's DDP child processes re-run this job, not the whole sweep.

    Lightning starts DDP children as ``sys.argv`` plus ``hydra.run.dir=<run.dir>``; inside a
    multirun that would be ``-m`` with every sweep value, so each child would start the sweep
    again (lightning-hydra-template issue 393). This job's own overrides and folder are used.
    """
    if not multirun():
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = str(out)
