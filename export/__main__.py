"""Export any registered model with its family's exporter (the registry names it):

    python -m export --model NAME [--checkpoint FILE] [--out-dir DIR] [--lora FILE] [--img-size N]
                     [--point-value 1-1-0-0] [--cases DIR] [--min-dice 0.97] [--force]

Every exporter has the signature ``export_model(spec, checkpoint, out_dir, **options)``; the options given
here are passed on, and one a family does not take is refused. `litemedsam models export` runs this.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from litemedsam.models.registry import MODELS, load_object


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Export a registered model to verified ONNX graphs.")
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--out-dir", type=Path, default=None, help="default: work_dir/")
    parser.add_argument("--lora", type=Path, default=None, help="samed, sam-vit-b: a SAMed LoRA file merged in first")
    parser.add_argument("--img-size", type=int, default=None, help="sam-vit-b, samed, promise: the input size")
    parser.add_argument("--point-value", default=None, help="promise: labels of its points, e.g. 1-1-0-0")
    parser.add_argument("--cases", type=Path, default=None, help="int8 models: cases for the agreement gate")
    parser.add_argument("--min-dice", type=float, default=None, help="int8 models: the gate's mean Dice (0.97)")
    parser.add_argument("--force", action="store_true", help="int8 models: keep a model that fails its gate")
    args = parser.parse_args(argv)
    spec = MODELS[args.model]
    fn = load_object(spec.exporter)
    options = {k: v for k, v in vars(args).items() if k not in ("model", "checkpoint", "out_dir") and v not in (None, False)}
    takes = inspect.signature(fn).parameters
    refused = [k for k in options if k not in takes]
    if refused:
        parser.error(f"{spec.name} takes no {', '.join('--' + k.replace('_', '-') for k in refused)}")
    if args.checkpoint is None and not spec.pinned and not spec.quantized_from:
        parser.error(f"{spec.name} needs --checkpoint: {spec.source}")
    try:
        report = fn(spec, args.checkpoint, args.out_dir, **options)
    except (RuntimeError, ValueError, OSError, KeyError) as e:
        print(f"ERROR: {spec.name}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
