"""The house rules hold (scripts/check_house.py): sizes, and no import cycle between folders."""

from __future__ import annotations

import importlib.util

from .conftest import ROOT


def _checker():
    spec = importlib.util.spec_from_file_location("check_house", ROOT / "scripts/check_house.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_module_or_function_too_long_and_no_folder_cycle() -> None:
    found, edges = _checker().breaches()
    assert found == []
    assert "models" not in edges.get("strategies", set())  # stages/ keeps them apart


def test_a_long_cycle_is_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _checker().cycles(edges) == [["a", "b", "c", "a"]]
