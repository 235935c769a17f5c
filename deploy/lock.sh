#!/usr/bin/env bash
# Refresh constraints.txt, the project's lock file: resolve pyproject.toml's dependencies with every extra the tests
# use (.[test] = all + modal + test tools) in a fresh virtual environment and pin what pip installed.
#
#   bash deploy/lock.sh                     # then review `git diff constraints.txt`, run the tests, commit
#
# Everything installs against it: `pip install -c constraints.txt -e ".[test]"` (.ci/run), and both images
# (deploy/Dockerfile) and the Modal images (deploy/modal_app.py). Run it with the Python the images use (3.11) on
# Linux x86_64: pins of compiled packages are per platform.
#   TORCH_INDEX  where torch comes from (default: the PyTorch CPU index, so the lock holds the CPU build and no
#                CUDA packages; set it empty to use pip's configured indexes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
TORCH_INDEX=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}
TORCH_PIN=$(grep -oE '"torch==[^"]+"' pyproject.toml | tr -d '"')
VENV=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$VENV")"' EXIT

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
if [ -n "$TORCH_INDEX" ]; then
    "$VENV/bin/pip" install -q --index-url "$TORCH_INDEX" "$TORCH_PIN"
else
    "$VENV/bin/pip" install -q "$TORCH_PIN"
fi
"$VENV/bin/pip" install -q "${ROOT}[test]"
"$VENV/bin/pip" check

{
    echo "# The lock file: exact versions of every dependency of vjepa-robot[test] (which includes all and modal),"
    echo "# resolved from pyproject.toml by deploy/lock.sh on $(date -u +%Y-%m-%d) with $("$VENV/bin/python" -V) on $(uname -sm)."
    echo "# Install with:  pip install -c constraints.txt -e \".[test]\"   (the images: -c constraints.txt \".[encoder]\")"
    echo "# Refresh with:  bash deploy/lock.sh   (after changing dependencies in pyproject.toml)"
    echo "# torch is pinned without its local label (+cpu / +cu128), so the CPU and the CUDA builds both satisfy it."
    # the project's own packages are not locked; torch's local version label is dropped (see above)
    "$VENV/bin/pip" freeze --exclude vjepa-robot --exclude vjepa-robot-client \
        | sed -E 's/^(torch==[^+]+)\+.*/\1/' | LC_ALL=C sort -f
} > constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pins"
