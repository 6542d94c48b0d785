"""Every command's --help: quick (no torch imported for it) and every option explained."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from .conftest import ROOT

COMMANDS = {  # command -> options its help must explain, one line each
    "predict": ["-m", "tl_experiments.commands.predict"],
    "export": ["-m", "tl_experiments.commands.export"],
    "advise": ["-m", "tl_experiments.commands.advise"],
    # What the installed tl-advise script runs: main() of the module, not the module as __main__.
    "tl-advise": ["-c", "from tl_experiments.commands.advise import main; main()"],
    "compare": ["-m", "tl_experiments.commands.compare"],
    "train": [str(ROOT / "train.py")],
    "eval": [str(ROOT / "eval.py")],
}
OPTIONS = {
    "predict": ["ckpt", "images", "topk", "csv", "batch_size"],
    "export": ["ckpt", "sweep", "format", "out", "images", "check_images", "atol"],
    "advise": ["priority", "size", "similarity", "budget", "similarity_images", "advice_out"],
    "tl-advise": ["priority", "size", "similarity", "budget", "similarity_images", "advice_out"],
    "eval": ["ckpt", "data_from", "split"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_is_quick_and_explains_each_option(name: str, tmp_path) -> None:
    # -X importtime lists every module imported: torch (seconds on 2 cores) must not be.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *COMMANDS[name], "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not {"torch", "pytorch_lightning", "timm", "pandas"} & imported
    for option in OPTIONS.get(name, []):
        assert re.search(rf"^\s+{option}=\S+\s+\S", proc.stdout, re.M), option
