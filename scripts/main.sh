#!/usr/bin/env bash
# The main job: compare the four classic transfer strategies (scratch, feature extraction,
# partial and full fine-tuning) on the embedded default data (EfficientNet-Lite0 with packaged
# ImageNet weights, the MNIST sample, 50 images per class), 3 seeds each, at the defaults the
# tuned sweep selected (scripts/tune.sh). The sweep runs seed-major and prints its table after
# every round of seeds, with jobs done and time left after every job (docs/sweeps.md).
# Extra arguments are Hydra overrides, e.g. `seed=0` for one round only. All nine strategies:
# `python train.py -m experiment=compare_strategies`; each at its best: scripts/tune.sh.
# The sweep folder is fixed, so running this again resumes: finished jobs are skipped.
source "$(dirname "$0")/env.sh"
python train.py -m experiment=compare_classic "$@"
