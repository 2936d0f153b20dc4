#!/usr/bin/env bash
# Create .venv with the pinned dependencies and latentwatch installed in editable mode.
# Safe to rerun: it reinstalls only when requirements.txt, constraints.txt or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi

stamp=.venv/.latentwatch-installed
wanted=$(cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    echo "setup: .venv is up to date"
    exit 0
fi

echo "setup: installing pinned dependencies (about a minute when torch is on local disk)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "$wanted" > "$stamp"
echo "setup: done"
