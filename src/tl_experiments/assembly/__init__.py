"""The one builder of a run: typed specs in, the module and data out, nothing changed
from outside after construction."""

from tl_experiments.assembly.build import Built, build_run, create_module

__all__ = ["Built", "build_run", "create_module"]
