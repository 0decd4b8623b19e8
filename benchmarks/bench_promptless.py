"""Seconds per image of the SAM ViT-B family models (box-prompted SAM, SAMed semantic, ProMISe auto-prompted).

    python -m benchmarks.bench_promptless [--random DIR] [--cases DIR] [--images 3]

The models are the ones built in work_dir/, or with ``--random DIR`` full-size ones with random weights
saved in the upstream layouts (SAM ViT-B, a SAMed LoRA for 8 classes at 512, ProMISe with 16 points)
and exported by the project's exporters into DIR, whose torch-vs-ONNX reports are printed. Random
weights say nothing about accuracy; they give the export checks and the CPU time at real size.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


from labelled import DEV
from litemedsam.io.formats.challenge import load_case
from litemedsam.models.registry import missing_file
from litemedsam.models.segmenter import make_segmenter

REPO = Path(__file__).resolve().parent.parent


def build_random(out: Path) -> None:
    """Random full-size checkpoints in the upstream layouts, exported into ``out``."""
    import torch

    from export.promise import ProMISe
    from export.sam_vit import SamModel

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    sam = SamModel().state_dict()
    torch.save(sam, out / "sam_vit_b_random.pth")
    lora = {}
    for j in range(24):
        lora[f"w_a_{j:03d}"], lora[f"w_b_{j:03d}"] = torch.randn(4, 768) * 0.02, torch.randn(768, 4) * 0.02
    head = SamModel(num_multimask=8, img_size=512).state_dict()
    lora.update({k: v for k, v in head.items() if k.startswith("prompt_encoder.") or
                 (k.startswith("mask_decoder.") and ".transformer." not in k)})
    torch.save(lora, out / "samed_random_lora.pth")
    torch.save(ProMISe().state_dict(), out / "promise_random.pt")
    del sam, lora, head
    for args in (["export", "--model", "sam-vit-b", "--checkpoint", out / "sam_vit_b_random.pth"],
                 ["export", "--model", "samed", "--checkpoint", out / "sam_vit_b_random.pth",
                  "--lora", out / "samed_random_lora.pth"],
                 ["export", "--model", "promise", "--checkpoint", out / "promise_random.pt"]):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", *map(str, args), "--out-dir", str(out)], cwd=REPO,
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr)
        report = json.loads(done.stdout)
        graphs = report.get("graphs", [report])
        errors = {f"{g['graph']}.{k}": (round(v["max_abs_error"], 7), v.get("mask_dice")) for g in graphs
                  for k, v in g["outputs"].items()}
        print(f"{args[0]} {args[2] if args[1] == '--model' else 'promise'}: exported in "
              f"{time.perf_counter() - start:.0f} s; max abs error, mask Dice: {errors}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=Path, default=None)
    parser.add_argument("--cases", type=Path, default=DEV)
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()
    if args.random:
        build_random(args.random)
    files = sorted((args.cases / "imgs").glob("2DBox_*.npz"))[:: 7][: args.images]
    cases = [load_case(f) for f in files]
    print("| model | image | s per image |")
    print("|---|---|---|")
    for name in ("sam-vit-b", "samed", "promise"):
        from litemedsam.models.registry import get_model

        if missing_file(get_model(name), args.random):
            print(f"| {name} | not built | |")
            continue
        seg = make_segmenter(name, model_dir=args.random)
        for case in cases:
            start = time.perf_counter()
            if name == "sam-vit-b":
                emb = seg.encode(case.image)
                seg.predict(emb, emb.frame.boxes_to_model(case.boxes))
            else:
                seg.segment(case.image)
            print(f"| {name} | {case.path.name} ({case.image.shape[1]}x{case.image.shape[0]}, {len(case.boxes)} boxes) "
                  f"| {time.perf_counter() - start:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
