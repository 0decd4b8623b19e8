#!/usr/bin/env bash
# Set up (as demo.sh does), then run the test suite: bash test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
.venv/bin/python -m pytest -q -rs "$@"
