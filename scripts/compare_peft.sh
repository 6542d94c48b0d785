#!/usr/bin/env bash
# Parameter-efficient strategies against feature extraction and full fine-tuning, each new
# strategy's lr tuned on validation (3 values x 3 seeds), with the shift analysis and the
# WiSE-FT curves (experiment=compare_peft), all into one sweep folder; then the report.
# Extra arguments are Hydra overrides for every sweep. Re-running resumes.
source "$(dirname "$0")/env.sh"
python train.py -m experiment=compare_peft "$@"   # every strategy at its shipped default
python train.py -m experiment=compare_peft strategy=bitfit,norm_tuning strategy.lr=3e-3,3e-2 "$@"
python train.py -m experiment=compare_peft strategy=lora strategy.lr=1e-3,1e-2 "$@"
python -m tl_experiments.compare logs/multirun/peft
