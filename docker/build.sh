#!/usr/bin/env bash
# Build the litemedsam image with no network access during the build:
#   bash docker/build.sh [--base IMAGE] [--tag TAG]
# 1. models: exported and verified in work_dir/ (scripts/setup.sh) when missing; LiteMedSAM and every
#    other model built in work_dir/ (fine-tuned slot, EfficientSAM) are staged in docker/models/ for the
#    image, so its router finds them; int8 encoders are not (every run uses the float encoder unless
#    LITEMEDSAM_INT8 opts in: int8 fails the accuracy gate, litemedsam/models/fastest.py);
# 2. wheelhouse: docker/wheelhouse/ gets our wheel and the runtime dependencies (pip download, for
#    CPython 3.11 on this architecture);
# 3. docker build, FROM --base (default python:3.11.11-slim-bookworm; where no registry can be
#    reached, make one with docker/build-base.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=python:3.11.11-slim-bookworm
TAG=litemedsam:latest
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    *) echo "usage: bash docker/build.sh [--base IMAGE] [--tag TAG]" >&2; exit 2 ;;
  esac
done
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! "$PY" -m litemedsam models verify >/dev/null 2>&1; then
  bash scripts/setup.sh
  PY=.venv/bin/python
fi
rm -rf docker/models
mkdir -p docker/models
"$PY" - <<'PY' >&2
import json, shutil
from litemedsam.models.registry import MODELS, is_built, manifest_path, model_paths
for spec in MODELS.values():
    if spec.quantized_from:
        continue
    if not spec.pinned:
        if not is_built(spec) or json.loads(manifest_path(spec).read_text()).get("accepted") is False:
            continue
        shutil.copy(manifest_path(spec), "docker/models/")
    for path in model_paths(spec, entries=spec.files):  # verified copies only
        shutil.copy(path, "docker/models/")
    print(f"image model: {spec.name}")
PY
rm -rf docker/wheelhouse
mkdir -p docker/wheelhouse
"$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w docker/wheelhouse . >&2
"$PY" -m pip download --quiet --disable-pip-version-check -d docker/wheelhouse \
  --only-binary=:all: --python-version 3.11 --implementation cp --platform "manylinux_2_28_$(uname -m)" \
  "$(ls docker/wheelhouse/litemedsam-*.whl)[serve]" >&2
docker build --network none --build-arg "BASE=$BASE" -f docker/Dockerfile -t "$TAG" . >&2
echo "$TAG"
