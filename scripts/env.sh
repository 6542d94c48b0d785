# Sourced by the README's commands: make .venv (if missing) and install the project in it.
# torch is pinned first: pip would otherwise be free to pick a build that breaks torchvision.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
python -m pip install --quiet -e ".[dev,export,loggers,ray]"
# The Ray launcher plugin without its AWS-only pins (pyproject.toml, the ray extra, says why).
python -m pip install --quiet --no-deps "hydra-ray-launcher>=1.2"
