#!/bin/sh
# Challenge entry point: segment every case of $INPUT_DIR into $OUTPUT_DIR.
INPUT_DIR=${INPUT_DIR:-/workspace/inputs}
OUTPUT_DIR=${OUTPUT_DIR:-/workspace/outputs}
here=$(dirname "$0")
if command -v litemedsam >/dev/null 2>&1; then
  exec litemedsam infer -i "$INPUT_DIR" -o "$OUTPUT_DIR"
fi
exec "$here/.venv/bin/litemedsam" infer -i "$INPUT_DIR" -o "$OUTPUT_DIR"
