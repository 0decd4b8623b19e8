#!/usr/bin/env bash
# Set up (as demo.sh does) with the system packages the tests need, then run every test tier:
# bash test.sh [pytest args], e.g. bash test.sh -m fast (seconds; tiers in pytest.ini)
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
bash scripts/system.sh
.venv/bin/python -m pytest -q -rs "$@"
