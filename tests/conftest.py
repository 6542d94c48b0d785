"""Shared fixtures: the real Hydra config, composed and shrunk (no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tl_experiments.cli import register_resolvers

register_resolvers()
ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small and fast: tiny timm model, 32 px, 5 images per class, a few batches.
TINY = [
    "model=test_resnet",
    "trainer=debug",
    "data.samples_per_class=5",
    "data.batch_size=16",
]


@pytest.fixture(autouse=True)
def _weights_cache(tmp_path_factory, monkeypatch):
    # Converted weights are cached once per test session, never in the user's home.
    monkeypatch.setenv("TL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "weights-cache"))


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/train.yaml`` with the tiny overrides plus ``extra``."""

    def _make(*extra: str, tiny: bool = True) -> DictConfig:
        overrides = (TINY if tiny else []) + [f"paths.output_dir={tmp_path / 'run'}", *extra]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="train", overrides=overrides)

    return _make


def run_train(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the root ``train.py`` in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pytest_collection_modifyitems(config, items) -> None:
    """``gpu``-marked tests need CUDA: skipped, with the reason, on a machine without it."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (run: bash scripts/gpu_check.sh)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
