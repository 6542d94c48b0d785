"""Answers as they arrive: a sweep's progress, time left and report, refreshed after each job.

The seed-major sweeper (``hydra_plugins/tl_experiments_sweeper``) writes the sweep's plan
(``sweep_plan.json``: its jobs, seed-major, and its start time). ``SweepProgress``, a Hydra
callback, runs after each job in that job's own process, whatever the launcher (joblib,
submitit, Ray), and:

- appends the job's duration and status to ``sweep_progress.jsonl``;
- prints jobs done of total and an estimate of the time left;
- rewrites the sweep's report.md and report.csv with the code of
  ``tl-compare`` (plots too once the last job is in);
- prints the comparison table each time every setting has one more seed, so the first table
  (one seed each) comes after one run per setting and its intervals tighten as seeds arrive.

Jobs that finish together take turns through a lock file. A report that cannot be written
is logged, never a reason to fail the job that trained.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from tl_experiments.atomic import write_atomic

__all__ = ["SweepProgress", "estimate_seconds_left", "seed_first", "write_plan"]

log = logging.getLogger(__name__)

PLAN = "sweep_plan.json"
PROGRESS = "sweep_progress.jsonl"
_LOCK = ".sweep_progress.lock"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def seed_first(overrides: list) -> list:
    """Hydra overrides with ``seed`` moved to the front (stable): it then varies slowest."""
    return sorted(overrides, key=lambda o: o.get_key_element().lstrip("+~") != "seed")


def write_plan(sweep_dir: Path, jobs: list[list[str]]) -> None:
    """Record a new sweep's jobs and start time; forget the progress of an earlier one."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plan = {"started": time.time(), "jobs": jobs}
    write_atomic(sweep_dir / PLAN, lambda tmp: Path(tmp).write_text(json.dumps(plan, indent=1)))
    (sweep_dir / PROGRESS).unlink(missing_ok=True)


def _job_id(overrides: list[str]) -> tuple[str, ...]:
    return tuple(sorted(overrides))


def _setting(job: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(o for o in job if _key(o) != "seed")


def estimate_seconds_left(
    jobs: list[tuple[str, ...]], records: list[dict], elapsed: float
) -> float | None:
    """Seconds until the sweep's last job ends, from the jobs seen so far.

    A job still to run is expected to take as long as the finished jobs of its setting
    (every override but the seed) took on average, or all finished jobs when its setting
    has none yet. The sweep has done the measured job-seconds in ``elapsed`` wall seconds,
    which counts the jobs running side by side, so the expected job-seconds left divided by
    that rate is the wall time left. None before any job has been measured.
    """
    timed = [r for r in records if r["status"] != "reused"]
    done = {tuple(r["job"]) for r in records}
    if not timed or elapsed <= 0:
        return None
    by_setting: dict[tuple[str, ...], list[float]] = {}
    for r in timed:
        by_setting.setdefault(_setting(tuple(r["job"])), []).append(r["seconds"])
    overall = statistics.fmean(r["seconds"] for r in timed)
    left = [j for j in jobs if j not in done]
    work_left = sum(statistics.fmean(by_setting.get(_setting(j), [overall])) for j in left)
    rate = sum(r["seconds"] for r in timed) / elapsed
    return work_left / rate


def _rounds(jobs: list[tuple[str, ...]], records: list[dict]) -> int:
    """How many seeds every setting of the plan has finished (failed runs count as done)."""
    counts = dict.fromkeys({_setting(j) for j in jobs}, 0)
    for r in records:
        setting = _setting(tuple(r["job"]))
        if setting in counts:
            counts[setting] += 1
    return min(counts.values(), default=0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "time left not known yet"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    return f"about {seconds / 60:.0f} min left"


@contextmanager
def _locked(sweep_dir: Path) -> Iterator[None]:
    with open(sweep_dir / _LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(sweep_dir: Path) -> tuple[dict | None, list[dict]]:
    plan_file, progress = sweep_dir / PLAN, sweep_dir / PROGRESS
    plan = json.loads(plan_file.read_text()) if plan_file.is_file() else None
    records = []
    if progress.is_file():
        records = [json.loads(line) for line in progress.read_text().splitlines() if line]
    return plan, records


class SweepProgress(Callback):
    """Hydra callback: after each job of a multirun, its progress line and refreshed report."""

    def __init__(self, tables: bool = True) -> None:
        self.tables = tables
        self._started = time.time()

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self._started = time.time()

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        try:
            self._update(config, job_return)
        except Exception as exc:  # the job's own result is already safe in its folder
            log.warning("The sweep report was not refreshed: %s", exc)

    def _status(self, job_return: Any) -> str:
        from hydra.core.utils import JobStatus

        out = Path(HydraConfig.get().runtime.output_dir)
        # train.py records a failed run in error.json and lets the sweep go on.
        if job_return.status != JobStatus.COMPLETED or (out / "error.json").is_file():
            return "failed"
        metrics = out / "metrics.json"
        # skip_finished: the job found an earlier run's metrics.json and trained nothing.
        if metrics.is_file() and os.path.getmtime(metrics) < self._started:
            return "reused"
        return "ok"

    def _update(self, config: Any, job_return: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        job = list(_job_id(list(config.hydra.overrides.task)))
        record = {"job": job, "seconds": round(time.time() - self._started, 2)}
        record["status"] = self._status(job_return)
        with _locked(sweep_dir):
            with open(sweep_dir / PROGRESS, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            plan, records = _read(sweep_dir)
            jobs = [_job_id(j) for j in plan["jobs"]] if plan else []
            self._print(sweep_dir, plan, jobs, records)

    def _print(self, sweep_dir: Path, plan: dict | None, jobs: list, records: list) -> None:
        done, failed = len(records), sum(r["status"] == "failed" for r in records)
        failures = f", {failed} failed" if failed else ""
        if not plan:  # another sweeper (Optuna): no job list to count against
            print(f"[sweep] {done} jobs done{failures}", flush=True)
            self._report(sweep_dir, None, final=False)
            return
        left = estimate_seconds_left(jobs, records, time.time() - plan["started"])
        final = done >= len(jobs)
        tail = "all done" if final else _duration(left)
        print(f"[sweep] {done}/{len(jobs)} jobs done{failures}; {tail}", flush=True)
        rounds = _rounds(jobs, records)
        new_round = rounds > _rounds(jobs, records[:-1])
        self._report(sweep_dir, (done, len(jobs), rounds) if new_round or final else None, final)

    def _report(self, sweep_dir: Path, shown: tuple[int, int, int] | None, final: bool) -> None:
        from tl_experiments.commands.compare import print_report
        from tl_experiments.report import write_report

        report = write_report(sweep_dir, plots=final)
        if shown and self.tables and not report.comparison.empty:
            done, total, rounds = shown
            seeds = "1 seed" if rounds == 1 else f"{rounds} seeds"
            print(f"\nReport after {done} of {total} jobs ({seeds} of every setting):", flush=True)
            print_report(report)
