#!/usr/bin/env bash
# Parameter-efficient strategies against feature extraction and full fine-tuning, each new
# strategy's lr tuned on validation (3 values x 3 seeds), all into one sweep folder; then the
# report (docs/results.md "Parameter-efficient strategies", docs/shift.md "WiSE-FT").
# The runs at the shipped defaults carry the shift analysis and the WiSE-FT curves; the
# lr-grid runs leave the analysis out (it changes no training result and costs minutes a
# run). Extra arguments are Hydra overrides for every sweep. Re-running resumes.
source "$(dirname "$0")/env.sh"
NO_ANALYSIS=(analysis.shifts=false analysis.wise_ft=false analysis.photos=0)
python train.py -m experiment=compare_peft "$@"   # every strategy at its shipped default
python train.py -m experiment=compare_peft strategy=bitfit,norm_tuning strategy.lr=3e-3,3e-2 \
    "${NO_ANALYSIS[@]}" "$@"
python train.py -m experiment=compare_peft strategy=lora strategy.lr=1e-3,1e-2 "${NO_ANALYSIS[@]}" "$@"
tl-compare logs/multirun/peft
