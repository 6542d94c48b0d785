#!/usr/bin/env bash
# The test suite, on a fresh machine: same install as the main job, then pytest.
# Arguments go to pytest (e.g. `-m "not slow"` for the quick half, `-n 0` for one process).
# One pytest worker per core (pytest-xdist); a worker that runs out of tests takes half of
# another's (worksteal): the slow end-to-end runs do not queue up behind one core.
source "$(dirname "$0")/env.sh"
python -m pytest -n auto --dist worksteal "$@"
