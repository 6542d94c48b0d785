"""``hydra/sweeper=seed_major``: a grid sweeper like Hydra's basic one, seed-major, writing
its plan; built on Hydra's public plugin API only (``hydra.plugins.sweeper.Sweeper``).

Hydra's basic sweeper runs the cartesian product of the swept keys with the first key
varying slowest, so ``strategy=a,b,c seed=0,1,2`` runs every seed of ``a`` before any of
``b``. This one moves ``seed`` first (every setting's first seed before any second seed: a
complete first table early), and writes the sweep's job list and start time to
``sweep_plan.json``, which the SweepProgress callback reads to count jobs and estimate the
time left (tl_experiments/commands/sweep_progress.py). As in the basic sweeper:
``hydra.sweeper.params`` (a config file's sweep) come before the command line's overrides,
a key given twice keeps its last values, ``max_batch_size`` jobs at most go to the launcher
at once, every batch is composed before it is launched, and ``multirun.yaml`` is saved.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules without entering
# them in sys.modules, where dataclasses cannot resolve string annotations.
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class SeedMajorSweeperConf:
    _target_: str = "hydra_plugins.tl_experiments_sweeper.seed_major_sweeper.SeedMajorSweeper"
    max_batch_size: int | None = None  # jobs handed to the launcher at once; None = all
    params: dict[str, str] | None = None  # a config file's sweep: key -> "a,b,c"


# Also under the name of Hydra's own default sweeper, so it is the default of every multirun
# while an experiment can still pick another (`override /hydra/sweeper: tl_optuna`); an
# override in train.yaml's defaults list would win over the experiment's. Hydra scans its core
# plugins before hydra_plugins, so this entry replaces the basic sweeper's. A
# conf/hydra/sweeper/basic.yaml would do the same but makes Hydra warn (5 lines, in every job
# of a parallel sweep) that a file is validated against a ConfigStore schema of the same name.
for _name in ("seed_major", "basic"):
    ConfigStore.instance().store(
        group="hydra/sweeper", name=_name, node=SeedMajorSweeperConf, provider="tl_experiments"
    )


def job_grid(overrides: list[Override]) -> list[list[str]]:
    """Every job's overrides: the product of each key's values, the first key slowest."""
    values: dict[str, list[str]] = {}  # a key given twice keeps its last values
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            kind = override.value_type.name if override.value_type else "?"
            raise HydraException(
                f"The seed_major sweeper takes lists, range() and choice(), not {kind} "
                f"({key}); use hydra/sweeper=tl_optuna for intervals."
            )
    return [list(job) for job in itertools.product(*values.values())]


def batches(jobs: list[list[str]], max_batch_size: int | None) -> list[list[list[str]]]:
    """The jobs in launcher batches of ``max_batch_size`` (None or -1: one batch)."""
    if max_batch_size in (None, -1) or not jobs:
        return [jobs]
    if max_batch_size <= 0:
        raise HydraException(f"hydra.sweeper.max_batch_size={max_batch_size} must be positive.")
    return [jobs[i : i + max_batch_size] for i in range(0, len(jobs), max_batch_size)]


class SeedMajorSweeper(Sweeper):
    """The grid of the swept values with ``seed`` varying slowest, and a plan file."""

    def __init__(self, max_batch_size: int | None = None, params: dict | None = None) -> None:
        super().__init__()
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def jobs(self, arguments: list[str]) -> list[list[str]]:
        """Every job's overrides, seed-major: ``params`` first, then the command line's."""
        from tl_experiments.commands.sweep_progress import seed_first

        loader = self.hydra_context.config_loader if self.hydra_context else None
        parser = OverridesParser.create(config_loader=loader)
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        return job_grid(seed_first(parser.parse_overrides(given)))

    def sweep(self, arguments: list[str]) -> list[Any]:
        from tl_experiments.commands.sweep_progress import write_plan

        assert self.config is not None and self.launcher is not None
        jobs = self.jobs(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        write_plan(sweep_dir, jobs)  # makes the sweep folder
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns: list[list[JobReturn]] = []
        done = 0
        for batch in batches(jobs, self.max_batch_size):
            self.validate_batch_is_legal(batch)  # a composition error before any job runs
            results = list(self.launcher.launch(batch, initial_job_idx=done))
            for r in results:
                _ = r.return_value  # raises here if the job raised
            done += len(batch)
            returns.append(results)
        return returns
