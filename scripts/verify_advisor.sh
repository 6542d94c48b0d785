#!/usr/bin/env bash
# The advisor's hit rate, predict then verify, on five datasets: for each, the advisor picks
# first (advice.json in the sweep folder, before any run), then the four classic strategies
# run at their shipped defaults x 3 seeds, then the report judges the pick: right when it is
# the validation winner or not distinguishable from it (paired over seeds, docs/advisor.md).
# Usage: bash scripts/verify_advisor.sh [ROOT]   (default logs/multirun/advisor); resumes.
source "$(dirname "$0")/env.sh"
ROOT="${1:-logs/multirun/advisor}"
for set in lfw_subset textures sklearn_photos; do  # real images that ship in installed wheels
    [ -d "data/$set" ] || python scripts/make_image_folder.py "$set" "data/$set"
done
declare -A DATA=(
    [mnist_sample]="data=mnist_sample"
    [digits]="data=digits data.samples_per_class=50"
    [lfw_subset]="data=image_folder data.root=data/lfw_subset"
    [textures]="data=image_folder data.root=data/textures"
    [sklearn_photos]="data=image_folder data.root=data/sklearn_photos"
)
for name in mnist_sample digits lfw_subset textures sklearn_photos; do
    sweep="$ROOT/$name"
    # shellcheck disable=SC2086  # the data overrides are several words on purpose
    [ -f "$sweep/advice.json" ] || python -m tl_experiments.advise ${DATA[$name]} advice_out="$sweep/advice.json"
    # shellcheck disable=SC2086
    python train.py -m experiment=compare_classic ${DATA[$name]} hydra.sweep.dir="$sweep" analysis.enabled=false
done
python scripts/advisor_hits.py "$ROOT"
