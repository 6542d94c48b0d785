#!/usr/bin/env bash
# The main job: compare the transfer strategies on the embedded default data
# (EfficientNet-Lite0 with packaged ImageNet weights, the MNIST sample, 50 images per class),
# then print the report's table. Extra arguments are Hydra overrides, e.g.
# `strategy=scratch,feature_extraction,partial_ft,full_ft seed=0` for a short run.
# The sweep folder is fixed, so running this again resumes: finished jobs are skipped.
source "$(dirname "$0")/env.sh"
SWEEP="logs/multirun/compare_strategies"
python train.py -m experiment=compare_strategies hydra.sweep.dir="$SWEEP" "$@"
python -m tl_experiments.compare "$SWEEP"
