"""What ``python train.py`` runs (the repository's ``train.py`` is Hydra's door, which finds
``conf/``): this job's facts from Hydra, read once, then ``tl_experiments.train.run``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from tl_experiments.commands.hydra_job import ddp_children_run_this_job_only, this_job

if TYPE_CHECKING:
    from tl_experiments.schema import RunRecord

__all__ = ["train"]


def train(cfg: DictConfig) -> RunRecord:
    """Run one job of ``train.py``: plain values in (``JobInfo``), the run's record out."""
    # Imported here: a multirun's launcher process only dispatches jobs, so it skips
    # importing torch and Lightning (about 4 s on 2 cores); each job imports them.
    from tl_experiments.train import run

    ddp_children_run_this_job_only(Path(cfg.paths.output_dir))
    return run(cfg, this_job())
