#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): GPU-marked tests, resnet50 training throughput
# (fp32, bf16-mixed, channels_last), train.py itself on generated JPEG photos (its ratio to
# the bare loop), the four-strategy comparison one job per GPU; one markdown table in
# logs/gpu_check/gpu_check.md. Under 10 minutes on a GPU machine.
# Without CUDA it runs a dry run on the CPU (tiny model), marked DRY in every row.
#   bash scripts/gpu_check.sh [--dry] [--seeds 0,1,2] [--out DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -x .venv/bin/python ]; then . .venv/bin/activate; fi
exec python scripts/gpu_check.py "$@"
