#!/usr/bin/env bash
# The test suite, on a fresh machine: same install as the main job, then pytest.
# Arguments go to pytest (e.g. `-m "not slow"` for the quick half, `-n 0` for one process).
# One pytest worker per core (pytest-xdist); tests marked xdist_group share a worker.
source "$(dirname "$0")/env.sh"
python -m pytest -n auto --dist loadgroup "$@"
