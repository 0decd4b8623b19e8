#!/usr/bin/env bash
# Set up a fresh machine: .venv with litemedsam (+ export and test extras), the verified
# checkpoint, and the exported, verified ONNX models in work_dir/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[export,test]'
.venv/bin/litemedsam models setup
