"""What every Hydra entry point shares: user errors as one sentence, failures recorded."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from tl_experiments.errors import UserError
from tl_experiments.outputs import write_json_atomic

__all__ = ["guarded", "register_resolvers"]


def short_dirname(name: str, limit: int = 120) -> str:
    """A sweep job's folder name: its overrides, hashed when too long for a file name."""
    if len(name) <= limit:
        return name
    import hashlib

    return f"{name[: limit - 12]}_{hashlib.sha1(name.encode()).hexdigest()[:10]}"


def register_resolvers() -> None:
    """OmegaConf resolvers the configs use (``${tl_dirname:...}``); call before Hydra."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("tl_dirname"):
        OmegaConf.register_new_resolver("tl_dirname", short_dirname)


def guarded(task: Callable[[DictConfig], dict], cfg: DictConfig) -> dict | None:
    """Run ``task(cfg)``; a failure prints one line and exits non-zero, or, in a multirun,
    is recorded in the job's ``error.json`` so the other jobs of the sweep go on."""
    try:
        return task(cfg)
    except Exception as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        _record_failure(cfg, e, message)
        print(f"Error: {message}", file=sys.stderr, flush=True)
        if not isinstance(e, UserError):
            print("Set HYDRA_FULL_ERROR=1 for the full traceback.", file=sys.stderr)
        if _multirun():
            return None
        sys.exit(2 if isinstance(e, UserError) else 1)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(cfg: DictConfig, e: BaseException, message: str) -> None:
    try:
        out = Path(cfg.paths.output_dir)
        if out.is_dir():
            write_json_atomic({"status": "failed", "error": message, "type": type(e).__name__},
                              out / "error.json")
    except Exception:  # the output folder itself may be the problem
        pass
