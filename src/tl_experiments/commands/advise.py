"""Measure a dataset, apply the lesson's rules, print the ``train.py`` command to run.

    tl-advise                                   # default data and model
    tl-advise data=digits priority=speed
    tl-advise data=image_folder data.root=DIR similarity=low

The entry point only: the work is in ``tl_experiments.advisor.command``, imported when the
command runs (torch and the model code take seconds to import; ``--help`` needs neither).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from tl_experiments.commands.guard import guarded
from tl_experiments.commands.preflight import CONF
from tl_experiments.commands.resolvers import register_resolvers

if TYPE_CHECKING:
    from tl_experiments.advisor.command import advise, render_advice, train_command

__all__ = ["advise", "main", "render_advice", "train_command"]

_LIBRARY = ("advise", "render_advice", "train_command")


def __getattr__(name: str):
    """``from tl_experiments.commands.advise import advise`` as before, imported on first use."""
    if name in _LIBRARY:
        from tl_experiments.advisor import command

        return getattr(command, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_resolvers()  # before Hydra composes (python -m and the tl-advise script alike)


# An absolute path: Hydra resolves a relative one against the calling file under ``python -m``
# but as a Python package (``pkg://conf``, which does not exist) under the tl-advise script.
@hydra.main(version_base="1.3", config_path=str(CONF), config_name="advise")
def main(cfg: DictConfig) -> None:
    """Entry point of ``tl-advise``."""
    from tl_experiments.advisor.command import advise
    from tl_experiments.commands.hydra_job import task_overrides

    guarded(partial(advise, overrides=task_overrides()), cfg)


if __name__ == "__main__":
    main()
