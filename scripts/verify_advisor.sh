#!/usr/bin/env bash
# The advisor's hit rate, predict then verify, on five datasets: for each, the advisor picks
# first (advice.json in the sweep folder, before any run of it), then the strategies run x 3
# seeds, then the report judges the pick: right when it is the validation winner or not
# distinguishable from it (paired over seeds; docs/advisor.md). The default data is judged
# in the sweep of every strategy at its shipped default; digits and the three ImageFolder
# sets (real images that ship in installed wheels) in the main command's comparison of the
# four classic strategies, each tuned on validation in every run (experiment=compare_classic).
# Usage: bash scripts/verify_advisor.sh   (resumes; sweeps under logs/multirun/advisor)
source "$(dirname "$0")/env.sh"
ROOT="logs/multirun/advisor"
advise() {  # $1 = sweep folder, the rest = data overrides
    local sweep="$1"; shift
    [ -f "$sweep/advice.json" ] || tl-advise "$@" advice_out="$sweep/advice.json"
}
advise logs/multirun/compare_strategies data=mnist_sample
python train.py -m experiment=compare_strategies
advise "$ROOT/digits" data=digits data.samples_per_class=50
python train.py -m experiment=compare_classic data=digits data.samples_per_class=50 \
    hydra.sweep.dir="$ROOT/digits" analysis.enabled=false
for set in lfw_subset textures sklearn_photos; do
    [ -d "data/$set" ] || python scripts/make_image_folder.py "$set" "data/$set"
    advise "$ROOT/$set" data=image_folder data.root="data/$set"
    python train.py -m experiment=compare_classic data=image_folder data.root="data/$set" \
        hydra.sweep.dir="$ROOT/$set" analysis.enabled=false
done
tl-compare advisor-hits logs/multirun/compare_strategies "$ROOT"/*/
