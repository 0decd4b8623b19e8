#!/usr/bin/env bash
# Set up, then segment a folder of challenge cases and score them when ground truth is present.
#   bash demo.sh [CASES] [OUT]
# CASES: a folder with imgs/ (and gts/) or a folder of .npz cases; default ../shared/data/cvpr24-dev
# OUT:   default outputs/<name of CASES>; gets segs/ (with efficiency.csv) and metrics.csv
set -euo pipefail
cd "$(dirname "$0")"
CASES=${1:-../shared/data/cvpr24-dev}
OUT=${2:-outputs/$(basename "$CASES")}
bash scripts/setup.sh
IMGS=$CASES
[ -d "$CASES/imgs" ] && IMGS=$CASES/imgs
status=0
.venv/bin/litemedsam infer -i "$IMGS" -o "$OUT/segs" || status=$?
if [ -d "$CASES/gts" ]; then
  .venv/bin/python evaluation/compute_metrics.py -s "$OUT/segs" -g "$CASES/gts" -csv_dir "$OUT/metrics.csv" -num_workers 2
fi
exit $status
