"""docs/lesson.md is regenerated from sweep folders by one script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import ROOT
from .test_report import sweep  # noqa: F401  (the synthetic sweep fixture)


def test_lesson_is_built_from_a_sweep(sweep: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "docs"
    out.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make_lesson.py"),
            "--compare",
            str(sweep),
            "--data-efficiency",
            str(tmp_path / "none"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (out / "lesson.md").read_text()
    assert "| Approach |" in text  # the measured comparison table
    assert "feature_extraction" in text and "Medical imaging startup" in text
    for link in ("img/decision_tree.png", "img/compare_accuracy_vs_time.png"):
        assert link in text and (out / link).stat().st_size > 0
