"""What a run prints: no third-party noise the project can avoid, and a closing summary."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tl_experiments.cli import parse_kv
from tl_experiments.train import run


def test_a_run_is_quiet_and_ends_with_a_summary(make_cfg, recwarn, capsys, caplog) -> None:
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    lightning.addHandler(caplog.handler)  # Lightning's logger need not propagate to the root
    try:
        cfg = make_cfg("analysis.enabled=false", "trainer.log_every_n_steps=50")
        metrics = run(cfg)
    finally:
        lightning.removeHandler(caplog.handler)
    warned = [str(w.message) for w in recwarn]
    for noise in ("in eval mode", "LeafSpec", "log_every_n_steps"):
        assert not [w for w in warned if noise in w], noise
    assert "Tip" not in caplog.text
    out = capsys.readouterr().out
    assert "Weights: none (random init)" in out and "lr" in out.split("Trainable")[0]
    assert f"Run folder: {Path(cfg.paths.output_dir)}" in out
    assert f"test accuracy {100 * metrics['test_acc']:.1f}%" in out


def test_help_is_an_answer_not_an_error(capsys) -> None:
    with pytest.raises(SystemExit) as e:  # it used to answer "Unknown argument '--help'"
        parse_kv(["--help"], {"ckpt": None}, "python -m x ckpt=PATH")
    assert e.value.code == 0
    assert capsys.readouterr().out == "usage: python -m x ckpt=PATH\n"
