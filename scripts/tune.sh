#!/usr/bin/env bash
# Each strategy at its best on validation: one Hydra grid sweep per strategy over its
# learning rate or its own knob (experiment=tuned: 3 seeds, 8 epochs, two jobs at a time),
# all into one sweep folder, then the report, which selects each strategy's setting on
# mean validation accuracy and pairs the test accuracies by seed (docs/results.md).
# Extra arguments are Hydra overrides for every sweep, e.g. data=digits
# hydra.sweep.dir=logs/multirun/tuned_digits; STRATEGIES="partial_ft full_ft" tunes only
# those. Re-running resumes (finished jobs are skipped).
source "$(dirname "$0")/env.sh"
ARGS=("$@")
SWEEP="logs/multirun/tuned"
for a in "$@"; do [[ "$a" == hydra.sweep.dir=* ]] && SWEEP="${a#hydra.sweep.dir=}"; done
grid() {
    [[ -z "${STRATEGIES:-}" || " $STRATEGIES " == *" ${1#strategy=} "* ]] || return 0
    python train.py -m experiment=tuned "$@" "${ARGS[@]}"
}
grid strategy=feature_extraction strategy.lr=1e-3,3e-3,1e-2
grid strategy=partial_ft strategy.backbone_lr_scale=0.1,0.3,1.0
grid strategy=full_ft strategy.backbone_lr_scale=0.1,0.3,1.0
grid strategy=discriminative strategy.lr_decay=0.385,0.7
grid strategy=lp_ft strategy.phases.0.start=0.25,0.5 strategy.lr=1e-3,1e-2
grid strategy=l2sp strategy.l2sp_alpha=1,10,100
grid strategy=l2sp strategy.l2sp_alpha=1,10 strategy.backbone_lr_scale=1.0
grid strategy=gradual_unfreeze strategy.lr=1e-3,3e-3
grid strategy=scratch strategy.lr=1e-3,3e-3
grid strategy=bitfit strategy.lr=3e-3,1e-2,3e-2
grid strategy=norm_tuning strategy.lr=3e-3,1e-2,3e-2
grid strategy=lora strategy.lr=1e-3,3e-3,1e-2
python -m tl_experiments.compare "$SWEEP"
