"""Train one timm backbone under one transfer strategy: ``python train.py strategy=partial_ft``.

Sweeps: ``python train.py -m strategy=scratch,feature_extraction,partial_ft,full_ft seed=0,1,2``.
"""

import sys

import hydra
from omegaconf import DictConfig

from tl_experiments.commands.guard import guarded
from tl_experiments.commands.preflight import preflight
from tl_experiments.commands.resolvers import register_resolvers
from tl_experiments.commands.train import train
from tl_experiments.paths import quote_path_overrides

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = guarded(train, cfg)  # commands/train.py: Hydra's facts read once, then the run
    # Returned for sweepers that optimise a value (Optuna): best validation accuracy.
    # A failed job returns None: the Optuna sweeper (hydra/sweeper=tl_optuna) records that as
    # a failed trial and goes on.
    return None if metrics is None else metrics["best_val_acc"]


if __name__ == "__main__":
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])  # a path as the report prints it
    preflight(sys.argv[1:], "train")
    main()
