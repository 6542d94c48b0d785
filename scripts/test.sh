#!/usr/bin/env bash
# The test suite, on a fresh machine: same install as the main job, then pytest.
# Arguments go to pytest (e.g. `-m "not slow"` for the quick half).
source "$(dirname "$0")/env.sh"
python -m pytest "$@"
