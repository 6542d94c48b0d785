"""The house rules hold (scripts/check_house.py): sizes, no import cycle between the package's
parts (root modules included), no library importing a command, no private framework state."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from .conftest import ROOT

SRC = ROOT / "src"

# Private Lightning or Hydra state: it works until the next release (docs/architecture.md).
PRIVATE = re.compile(
    r"hydra\._internal|\._on_before_step|\._on_after_step|_batches_that_stepped|\._trainer\b"
    r"|_internal_optimizer_metadata|def _store\b"
    r"|\.(fit_loop|epoch_loop|strategy|trainer|_trainer)\._[a-z]"
)


def _checker():
    spec = importlib.util.spec_from_file_location("check_house", ROOT / "scripts/check_house.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package(root: Path, files: dict[str, str]) -> Path:
    """A throwaway ``tl_experiments`` package made of ``files`` (path -> source)."""
    package = root / "tl_experiments"
    for name, source in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(source)
    return package


def test_no_module_or_function_too_long_and_no_cycle() -> None:
    found, edges = _checker().breaches()
    assert found == []
    assert "models" not in edges.get("strategies", set())  # stages/ keeps them apart
    root_modules = {p.name for p in (SRC / "tl_experiments").glob("*.py")}
    leaves = {"atomic.py", "errors.py", "paths.py", "schema.py", "config_schema.py"}
    # Commands live in commands/, libraries in their folders; the root keeps the shared
    # leaves (they import no folder) and train.py, the run.
    assert root_modules == {"__init__.py", "train.py"} | leaves


def test_a_long_cycle_is_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _checker().cycles(edges) == [["a", "b", "c", "a"]]


def test_a_cycle_through_a_root_module_is_found(tmp_path: Path) -> None:
    # The loop the package root hid: a root module imports run/, which imports it back.
    package = _package(
        tmp_path,
        {
            "cli.py": "from tl_experiments.run.outputs import write\n",
            "errors.py": "",
            "run/__init__.py": "",
            "run/outputs.py": "def write():\n    from tl_experiments import cli, errors\n",
        },
    )
    found, edges = _checker().breaches(package)
    assert edges["run"] == {"cli.py", "errors.py"} and edges["cli.py"] == {"run"}
    assert found == ["import cycle: cli.py -> run -> cli.py"]


def test_a_library_that_imports_a_command_is_a_breach(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "commands/__init__.py": "",
            "commands/go.py": "import tl_experiments.report\n",
            "report/__init__.py": "from tl_experiments.commands.go import main\n",
        },
    )
    found, _ = _checker().breaches(package)
    assert "report imports commands/ (a library imports no command)" in found


def _private_uses() -> list[str]:
    hits = []
    for path in sorted(SRC.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE.search(line):
                hits.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    return hits


def test_no_private_lightning_or_hydra_state_in_src() -> None:
    assert _private_uses() == []


def test_the_private_state_pattern_finds_what_it_is_for() -> None:
    for line in (
        "from hydra._internal.core_plugins.basic_sweeper import BasicSweeper",
        "self.trainer.fit_loop.epoch_loop._batches_that_stepped += 1",
        "if self._trainer is not None:",
        "trainer.strategy._lightning_module",
    ):
        assert PRIVATE.search(line), line
    assert not PRIVATE.search("self.trainer.fit_loop.epoch_loop.batch_progress")
