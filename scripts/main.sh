#!/usr/bin/env bash
# The main job: compare the four classic transfer strategies (scratch, feature extraction,
# partial and full fine-tuning) on the embedded default data (EfficientNet-Lite0 with packaged
# ImageNet weights, the MNIST sample, 50 images per class), 3 seeds each, every strategy tuned
# on validation in every run (its grid in conf/strategy/<name>.yaml, successive halving).
# The sweep runs seed-major and prints its table after every round of seeds, with jobs done
# and time left after every job (docs/sweeps.md); then the analysis of the selected settings
# (drift, CKA, shifted test sets, WiSE-FT) runs and the report is written again with it.
# Extra arguments are Hydra overrides for both passes, e.g. `seed=0` for one round only, or
# `data=image_folder data.root=DIR` for your own folder of images.
# The sweep folder is fixed, so running this again resumes: finished jobs are skipped.
source "$(dirname "$0")/env.sh"
python train.py -m experiment=compare_classic "$@"
echo "The tables above are final; now the analysis of each run's selected setting."
python train.py -m experiment=compare_classic analysis.defer=false "$@"
