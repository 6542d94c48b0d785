"""``hydra/sweeper=seed_major``: Hydra's basic sweeper, seed-major, writing its plan.

BasicSweeper runs the cartesian product of the swept keys with the first key varying
slowest, so ``strategy=a,b,c seed=0,1,2`` runs every seed of ``a`` before any of ``b``.
This one moves ``seed`` first (every setting's first seed before any second seed: a
complete first table early), and writes the sweep's job list and start time to
``sweep_plan.json``, which the SweepProgress callback reads to count jobs and estimate the
time left (tl_experiments/sweep_progress.py). Everything else is BasicSweeper's.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules without entering
# them in sys.modules, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override


@dataclass
class SeedMajorSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.tl_experiments_sweeper.seed_major_sweeper.SeedMajorSweeper"


# Also under the name of Hydra's own default sweeper, so it is the default of every multirun
# while an experiment can still pick another (`override /hydra/sweeper: optuna`); an override
# in train.yaml's defaults list would win over the experiment's. Hydra scans its core plugins
# before hydra_plugins, so this entry replaces BasicSweeper's. A conf/hydra/sweeper/basic.yaml
# would do the same but makes Hydra warn (5 lines, in every job of a parallel sweep) that a
# file is validated against a ConfigStore schema of the same name.
for _name in ("seed_major", "basic"):
    ConfigStore.instance().store(
        group="hydra/sweeper", name=_name, node=SeedMajorSweeperConf, provider="tl_experiments"
    )


class SeedMajorSweeper(BasicSweeper):
    """BasicSweeper with ``seed`` varying slowest and a plan file in the sweep folder."""

    def split_arguments(  # type: ignore[override]  # BasicSweeper's is a staticmethod
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        from tl_experiments.commands.sweep_progress import seed_first, write_plan

        batches = BasicSweeper.split_arguments(seed_first(overrides), max_batch_size)
        assert self.config is not None
        write_plan(Path(self.config.hydra.sweep.dir), [job for b in batches for job in b])
        return batches
