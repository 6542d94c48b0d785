"""Where a run executes: torch threads, core sharing among parallel jobs, a GPU per job,
and the DDP environment, set up and torn down by one context manager, ``placed``. Placement
only; what the run computes is in ``train.py``."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from tl_experiments.errors import UserError
from tl_experiments.run.core_share import CoreShare

__all__ = [
    "Placement",
    "placed",
    "core_share",
    "ddp_children_run_this_job_only",
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


@dataclass
class Placement:
    """Where this job runs: its GPU slot (``gpu_per_job``) and the callbacks that keep it
    placed while it trains (``CoreShare`` re-balances threads every epoch)."""

    gpu_slot: int | None = None
    callbacks: list = field(default_factory=list)


@contextmanager
def placed(cfg: DictConfig, out: Path) -> Iterator[Placement]:
    """Place one run: threads, core share, GPU slot, and a DDP environment that re-runs only
    this job; on leaving, release the core share and leave no DDP state behind."""
    set_threads(cfg.get("threads") or parallel_share())
    share = core_share(cfg)
    try:
        gpu_slot = maybe_claim_gpu(cfg)
        ddp_children_run_this_job_only(out)
        yield Placement(gpu_slot, [share] if share else [])
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


def ddp_children_run_this_job_only(out: Path) -> None:
    """Make Lightning's DDP child processes re-run this job, not the whole sweep.

    Lightning starts DDP children as ``sys.argv`` plus ``hydra.run.dir=<run.dir>``; inside a
    multirun that would be ``-m`` with every sweep value, so each child would start the sweep
    again (lightning-hydra-template issue 393). This job's own overrides and folder are used.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = str(out)


def set_threads(n: int | None) -> None:
    """Limit torch's intra-op threads (parallel sweep jobs must not oversubscribe cores)."""
    if n:
        torch.set_num_threads(int(n))


def core_share(cfg: DictConfig) -> CoreShare | None:
    """Parallel CPU jobs (joblib launcher) with no fixed ``threads`` split the cores among
    the jobs running at the moment (run/core_share.py)."""
    if cfg.get("threads") or parallel_share() is None:
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


def maybe_claim_gpu(cfg: DictConfig) -> int | None:
    """With ``gpu_per_job`` (auto: parallel jobs on a multi-GPU machine), pin one GPU."""
    mode = cfg.get("gpu_per_job", "auto")
    # device_count() asks NVML and does not start CUDA (is_available() would, and then
    # CUDA_VISIBLE_DEVICES set below would be ignored).
    count = cfg.get("gpu_count") or torch.cuda.device_count()
    if mode == "auto":
        on_gpu = cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto")
        mode = on_gpu and parallel_share() is not None and count > 1
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


def parallel_share() -> int | None:
    """Cores per job when Hydra's joblib launcher runs ``n_jobs`` jobs side by side."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if not n_jobs or n_jobs < 1:
        return None
    return max(1, (os.cpu_count() or 1) // int(n_jobs))
