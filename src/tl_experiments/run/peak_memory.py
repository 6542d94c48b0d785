"""Peak memory of a fit: the process's resident-set high-water mark on CPU (reset before fit
through /proc/self/clear_refs, Linux), the allocator's peak on a GPU. Parallel jobs are
separate processes, so each measures its own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["measure_peak_memory", "peak_memory_mb", "reset_peak_memory"]


@contextmanager
def measure_peak_memory() -> Iterator[dict]:
    """``with measure_peak_memory() as peak:`` fills ``peak`` (:func:`peak_memory_mb`) on exit."""
    peak: dict = {}
    reset_peak_memory()
    yield peak
    peak.update(peak_memory_mb())


def reset_peak_memory() -> None:
    """Start measuring from now (what was resident before fit counts from its size now)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    # Not Linux, or not allowed: the peak then counts from the start of the process.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # 5 = reset the peak RSS (VmHWM)


def peak_memory_mb() -> dict[str, float | None]:
    """``cpu_rss``: peak resident memory of this process since the reset (MiB), None where
    /proc is missing; ``gpu``: peak GPU memory allocated by torch (MiB), None without CUDA."""
    rss = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    gpu = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return {"cpu_rss": rss, "gpu": gpu}
