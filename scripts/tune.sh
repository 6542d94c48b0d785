#!/usr/bin/env bash
# The exhaustive reference for the main command's tuning: every setting of every classic
# strategy's grid (`search:` in conf/strategy/<name>.yaml) trained for every epoch, 3 seeds,
# no analysis (tune.exhaustive=true; each setting is also tested, after the selection, for
# the check). Then scripts/check_selection.py compares what successive halving selects
# (replayed on these curves: a resumed run is the uninterrupted one, tests/test_tuning.py)
# with the exhaustive grid's pick: docs/results.md ("Cheap search, checked").
# Extra arguments are Hydra overrides, e.g. data=digits; SWEEP sets the folder.
source "$(dirname "$0")/env.sh"
SWEEP="${SWEEP:-logs/multirun/exhaustive}"
python train.py -m experiment=compare_classic tune.exhaustive=true analysis.enabled=false \
    hydra.sweep.dir="$SWEEP" "$@"
python scripts/check_selection.py "$SWEEP"
