"""One GPU per job when a sweep runs several jobs at once on a multi-GPU machine.

Hydra leaves device placement to launchers (Hydra issue 3002) and submitit's local
executor piles jobs onto one GPU (issue 2757). Ray does this natively but is a heavy
dependency, so the light path is ours: each parallel job (joblib launcher) takes an
exclusive ``flock`` on the first free slot file and sets ``CUDA_VISIBLE_DEVICES`` to that
GPU before CUDA starts. The OS releases the lock when the job's process ends, even if it
is killed, so a crashed job never strands a GPU.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

__all__ = ["claim_gpu"]

_held: list[IO] = []  # keep lock files open for the life of the process


def claim_gpu(
    count: int, lock_dir: str | Path, timeout_s: float = 3600.0, poll_s: float = 0.5
) -> int:
    """Take the first free GPU slot out of ``count``, pin this process to it, return it."""
    release_all()  # a reused worker process starting its next job: its last job is over
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        for i in range(count):
            f = open(lock_dir / f"gpu{i}.lock", "w")  # noqa: SIM115 (held until exit)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            f.write(f"{os.getpid()}\n")
            f.flush()
            _held.append(f)
            os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
            return i
        if time.monotonic() > deadline:
            raise TimeoutError(f"No free GPU slot among {count} after {timeout_s:.0f} s.")
        time.sleep(poll_s)


def release_all() -> None:
    """Give back every slot this process holds (tests; a finished process releases anyway)."""
    while _held:
        _held.pop().close()
