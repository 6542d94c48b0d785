"""The real ``train`` config and Optuna sweeper with a cheap objective in place of training
(tests/test_search.py): what is tested is the study's storage, not the runs."""

import math
import time

import hydra
from omegaconf import DictConfig

from tl_experiments.commands.resolvers import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    time.sleep(0.3)  # a trial takes a moment, so two searches interleave their trials
    return -abs(math.log10(cfg.strategy.lr) + 3)  # best at lr = 1e-3


if __name__ == "__main__":
    main()
