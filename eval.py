"""Evaluate a trained checkpoint: ``python eval.py ckpt=<run>/checkpoints/best.ckpt``.

A whole folder of labelled images: ``python eval.py ckpt=... data=image_folder data.root=DIR``.
"""

import sys

import hydra
from omegaconf import DictConfig

from tl_experiments.commands.guard import guarded
from tl_experiments.commands.preflight import preflight
from tl_experiments.commands.resolvers import register_resolvers
from tl_experiments.paths import quote_path_overrides

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    # Imported here: a multirun's launcher process only dispatches jobs, so it skips
    # importing torch and Lightning (about 4 s on 2 cores); each job imports them.
    from tl_experiments.commands.evaluate import evaluate

    metrics = guarded(evaluate, cfg)
    return None if metrics is None else metrics["test_acc"]


if __name__ == "__main__":
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])  # a path as the report prints it
    preflight(sys.argv[1:], "eval")
    main()
