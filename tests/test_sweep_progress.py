"""The sweep's time-left estimate and seed-major order (sweep_progress.py)."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from tl_experiments.commands.sweep_progress import estimate_seconds_left, seed_first

JOBS = [
    (f"seed={seed}", f"strategy={name}")
    for seed in (0, 1, 2)
    for name in ("feature_extraction", "full_ft")
]


def _done(job: tuple[str, ...], seconds: float, status: str = "ok") -> dict:
    return {"job": list(job), "seconds": seconds, "status": status}


def test_seed_moves_first_and_keeps_the_other_order() -> None:
    parser = OverridesParser.create()
    overrides = parser.parse_overrides(["strategy=a,b", "lr=1,2", "seed=0,1"])
    assert [o.get_key_element() for o in seed_first(overrides)] == ["seed", "strategy", "lr"]


def test_time_left_uses_each_settings_own_duration_and_the_parallel_rate() -> None:
    # Two jobs side by side: 10 s + 100 s of jobs done in 100 s of wall time.
    records = [_done(JOBS[0], 10.0), _done(JOBS[1], 100.0)]
    left = estimate_seconds_left(JOBS, records, elapsed=100.0)
    # 2 more of each: 2 x 10 + 2 x 100 = 220 job-seconds at 1.1 job-seconds a second.
    assert left == pytest.approx(220 / 1.1)


def test_a_setting_not_seen_yet_takes_the_mean_and_reused_jobs_are_not_timed() -> None:
    records = [_done(JOBS[0], 10.0), _done(JOBS[2], 0.1, status="reused")]
    left = estimate_seconds_left(JOBS, records, elapsed=10.0)
    # Left: 3 full_ft (mean of timed jobs: 10 s) and 1 feature_extraction (10 s), rate 1.
    assert left == pytest.approx(40.0)
    assert estimate_seconds_left(JOBS, [_done(JOBS[0], 1.0, "reused")], 5.0) is None


@pytest.mark.parametrize("seed", ["+seed=0,1", "seed=range(3)", "seed=choice(0,1)", "~seed"])
def test_seed_moves_first_in_any_override_form(seed: str) -> None:
    parser = OverridesParser.create()
    overrides = parser.parse_overrides(["strategy=a,b", seed])
    assert seed_first(overrides)[0].get_key_element().lstrip("+~") == "seed"


def test_the_sweeper_crosses_params_and_arguments_seed_major_in_batches() -> None:
    from hydra_plugins.tl_experiments_sweeper.seed_major_sweeper import SeedMajorSweeper, batches

    sweeper = SeedMajorSweeper(params={"strategy": "a,b", "lr": "1"})
    jobs = sweeper.jobs(["lr=2,3", "seed=range(2)", "+x=y"])
    # params first, the command line's lr replaces theirs; seed varies slowest.
    assert jobs[:3] == [
        ["seed=0", "strategy=a", "lr=2", "+x=y"],
        ["seed=0", "strategy=a", "lr=3", "+x=y"],
        ["seed=0", "strategy=b", "lr=2", "+x=y"],
    ]
    assert len(jobs) == 8 and [j[0] for j in jobs] == ["seed=0"] * 4 + ["seed=1"] * 4
    assert [len(b) for b in batches(jobs, 3)] == [3, 3, 2]
    assert batches(jobs, None) == [jobs] and batches([[]], -1) == [[[]]]


def test_the_sweeper_refuses_an_interval() -> None:
    from hydra.errors import HydraException

    from hydra_plugins.tl_experiments_sweeper.seed_major_sweeper import SeedMajorSweeper

    with pytest.raises(HydraException, match="interval"):
        SeedMajorSweeper().jobs(["lr=interval(0,1)"])
