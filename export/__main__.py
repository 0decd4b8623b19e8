"""Export any registered model with its family's exporter (the registry names it):

    python -m export --model NAME [--checkpoint FILE] [--out-dir DIR] [--lora FILE] [--img-size N]
                     [--point-value 1-1-0-0] [--cases DIR] [--min-dice 0.98] [--min-p10 0.90] [--force]

Every exporter has the signature ``export_model(spec, checkpoint, out_dir, **options)``; the options
(litemedsam.models.registry.EXPORT_OPTIONS) given here are passed on, and one a family does not take is refused.
`litemedsam models export` and `litemedsam models quantize` run this.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from litemedsam.models.registry import EXPORT_OPTIONS, MODELS, load_object

TYPES = {"path": Path, "int": int, "float": float, "text": str}


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(description="Export a registered model to verified ONNX graphs.")
    made.add_argument("--model", required=True, choices=sorted(MODELS))
    made.add_argument("--checkpoint", type=Path, default=None, help="the model's torch checkpoint (litemedsam: the "
                      "verified work_dir/lite_medsam.pth; int8 models: their float model)")
    made.add_argument("--out-dir", type=Path, default=None, help="default: work_dir/")
    for name, (kind, text) in EXPORT_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if kind == "flag":
            made.add_argument(flag, action="store_true", help=text)
        else:
            made.add_argument(flag, type=TYPES[kind], default=None, help=text)
    return made


def main(argv=None) -> int:
    command = parser()
    args = command.parse_args(argv)
    spec = MODELS[args.model]
    fn = load_object(spec.exporter)
    options = {k: v for k, v in vars(args).items() if k in EXPORT_OPTIONS and v not in (None, False)}
    takes = inspect.signature(fn).parameters
    refused = [k for k in options if k not in takes]
    if refused:
        command.error(f"{spec.name} takes no {', '.join('--' + k.replace('_', '-') for k in refused)}")
    if args.checkpoint is None and not spec.pinned and not spec.quantized_from:
        command.error(f"{spec.name} needs --checkpoint: {spec.source}")
    try:
        report = fn(spec, args.checkpoint, args.out_dir, **options)
    except (RuntimeError, ValueError, OSError, KeyError) as e:
        print(f"ERROR: {spec.name}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
