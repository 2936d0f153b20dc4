#!/usr/bin/env bash
# Command one: set up .venv (pinned dependencies) and run the whole pipeline on the bundled walkway footage.
# Arguments are passed to tools/demo.py (for example --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python tools/demo.py "$@"
