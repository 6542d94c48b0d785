"""scripts/gpu_check.py in its dry mode (the CPU, a tiny model): every step runs, train.py's
own row on a generated photo folder included, and the table it writes says DRY in every row,
never passing for GPU numbers. Its comparison is a sweep of 4 jobs, 2 at a time on 2
simulated GPUs: it also shows that parallel jobs each get their own GPU (the sweep's own
tests are in test_sweeps.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_gpu_check_dry_run_writes_its_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    table = (tmp_path / "gpu_check.md").read_text()
    assert "DRY RUN on the CPU" in table and "not GPU numbers" in table
    rows = [line for line in table.splitlines() if line.startswith("| DRY")]
    assert all(row.startswith("| DRY (CPU) |") for row in rows)
    assert not [line for line in table.splitlines() if line.startswith("| GPU")]
    checks = [row.split(" | ")[1] for row in rows]
    assert checks.count("GPU tests") == 1
    assert checks.count("throughput") == 4  # fp32, bf16-mixed, channels_last, both
    # train.py itself on generated JPEG photos, as images/s and against the bare loop
    (train_py,) = [row for row in rows if row.split(" | ")[1] == "train.py"]
    assert "48 JPEG photos" in train_py and " | ok | " in train_py
    assert re.search(r"\d img/s, \d+\.\d\dx the bare loop's bf16-mixed channels_last", train_py)
    assert checks.count("comparison") == 4  # the four strategies, one job per (simulated) GPU
    slots = {row.split(" | ")[2].rsplit(" ", 1)[-1] for row in rows if "comparison" in row}
    assert slots == {"0", "1"}

    # joblib runs 2 jobs at once; with 2 (simulated) GPUs each worker pins a distinct one.
    runs = [json.loads(p.read_text()) for p in (tmp_path / "compare").rglob("metrics.json")]
    assert len(runs) == 4
    assert len({m["pid"] for m in runs}) == 2  # separate worker processes...
    assert any(  # ...overlapping...
        a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
        for a in runs
        for b in runs
        if a["pid"] != b["pid"]
    )
    slot_of = {(m["pid"], m["gpu_slot"]) for m in runs}
    assert len(slot_of) == 2 and {s for _, s in slot_of} == {0, 1}  # ...each on its own GPU
