"""Where a run executes: torch threads, core sharing among parallel jobs, a GPU per job,
set up (and DDP state torn down) by one context manager, ``placed``, from plain values
(``JobInfo``: the entry point reads them from Hydra). Placement only; what the run computes
is in ``train.py``."""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig

from tl_experiments.errors import UserError
from tl_experiments.run.core_share import CoreShare

__all__ = [
    "JobInfo",
    "Placement",
    "placed",
    "core_share",
    "end_distributed",
    "maybe_claim_gpu",
    "parallel_share",
    "set_threads",
]

log = logging.getLogger(__name__)


def _skip_failing_nvml_probe() -> None:
    """Make ``torch.cuda.is_available()`` cheap again where NVIDIA's NVML library is absent.

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (lightning_fabric/__init__.py) so
    that the check asks NVML instead of initialising CUDA. Without libnvidia-ml (no NVIDIA
    driver, e.g. a CPU machine) torch then tries to load it on every call, fails, and falls
    back to the CUDA runtime's count anyway, never cached, and AdamW makes that call at
    every step (its cost: docs/speed.md). Without the library the flag changes no answer,
    so it is dropped.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1" or torch.version.hip:
        return  # ROCm builds count AMD GPUs without NVML: the flag keeps forks safe there
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


_skip_failing_nvml_probe()


@dataclass(frozen=True)
class JobInfo:
    """What the launcher knows about this job, as plain values: the entry point reads them
    from Hydra once (``commands/hydra_job.py``); a run called from Python is a single run."""

    name: str = ""  # the job's overrides as one name (seed=0,strategy=full_ft), "" = none
    overrides: tuple[str, ...] = ()  # the job's own command-line overrides (resume hint)
    parallel_jobs: int | None = None  # jobs the launcher runs side by side (joblib n_jobs)


@dataclass
class Placement:
    """Where this job runs: its GPU slot (``gpu_per_job``), the callbacks that keep it
    placed while it trains (``CoreShare`` re-balances threads every epoch), and the job."""

    gpu_slot: int | None = None
    callbacks: list = field(default_factory=list)
    job: JobInfo = field(default_factory=JobInfo)


@contextmanager
def placed(cfg: DictConfig, job: JobInfo | None = None) -> Iterator[Placement]:
    """Place one run: threads, core share, GPU slot; on leaving, release the core share and
    leave no DDP state behind (a multirun job's DDP children re-run only this job: the entry
    point sees to that, ``commands/hydra_job.py``)."""
    job = job or JobInfo()
    set_threads(cfg.get("threads") or parallel_share(job.parallel_jobs))
    share = core_share(cfg, job.parallel_jobs)
    try:
        gpu_slot = maybe_claim_gpu(cfg, job.parallel_jobs)
        yield Placement(gpu_slot, [share] if share else [], job)
    finally:
        end_distributed()
        if share:
            share.release()


def end_distributed() -> None:
    """Leave no DDP state behind for the next job of a multirun in this process: Lightning
    reads LOCAL_RANK etc. to decide whether it must start child processes."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)


def set_threads(n: int | None) -> None:
    """Limit torch's intra-op threads (parallel sweep jobs must not oversubscribe cores)."""
    if n:
        torch.set_num_threads(int(n))


def core_share(cfg: DictConfig, parallel_jobs: int | None = None) -> CoreShare | None:
    """Parallel CPU jobs (joblib launcher) with no fixed ``threads`` split the cores among
    the jobs running at the moment (run/core_share.py)."""
    if cfg.get("threads") or parallel_share(parallel_jobs) is None:
        return None
    accelerator = cfg.trainer.get("accelerator")
    if not (accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.device_count())):
        return None
    share = CoreShare(cfg.get("cpu_lock_dir") or f"/tmp/tl_experiments_cpu_slots_{os.getuid()}")
    try:
        share.claim()
    except OSError as e:  # e.g. a lock folder this user may not write: keep the fixed share
        log.warning("Core sharing off (%s); this job keeps %d threads.", e, torch.get_num_threads())
        return None
    return share


def maybe_claim_gpu(cfg: DictConfig, parallel_jobs: int | None = None) -> int | None:
    """With ``gpu_per_job`` (auto: parallel jobs on a multi-GPU machine), pin one GPU."""
    mode = cfg.get("gpu_per_job", "auto")
    # device_count() asks NVML and does not start CUDA (is_available() would, and then
    # CUDA_VISIBLE_DEVICES set below would be ignored).
    count = cfg.get("gpu_count") or torch.cuda.device_count()
    if mode == "auto":
        on_gpu = cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto")
        mode = on_gpu and parallel_share(parallel_jobs) is not None and count > 1
    if not mode:
        return None
    if count < 1:
        raise UserError(
            "gpu_per_job=true needs GPUs; none are visible (set gpu_count for a "
            "simulated run, or gpu_per_job=false)."
        )
    from tl_experiments.run.gpu_slots import claim_gpu

    slot = claim_gpu(count, cfg.get("gpu_lock_dir") or "/tmp/tl_experiments_gpu_slots")
    log.info("gpu_per_job: this job runs on GPU %d (CUDA_VISIBLE_DEVICES=%d).", slot, slot)
    return slot


def parallel_share(parallel_jobs: int | None) -> int | None:
    """Cores per job when the launcher runs ``parallel_jobs`` jobs side by side."""
    if not parallel_jobs or parallel_jobs < 1:
        return None
    return max(1, (os.cpu_count() or 1) // int(parallel_jobs))
