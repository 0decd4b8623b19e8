"""Peak memory of `litemedsam infer` on one large synthetic 2D image (fresh process), against the documented
bound: 0.6 GB + the decoded image + 9 bytes per pixel.

    python -m benchmarks.bench_memory [--megapixels 80] [--channels 3] [--boxes 4]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=80)
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3)
    parser.add_argument("--boxes", type=int, default=4)
    args = parser.parse_args(argv)
    h = int((args.megapixels * 1e6 * 0.8) ** 0.5)
    w = int(args.megapixels * 1e6 / h)
    shape = (h, w) if args.channels == 1 else (h, w, 3)
    image = np.zeros(shape, np.uint8)
    image[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 200
    rng = np.random.default_rng(0)
    x0, y0 = rng.integers(0, w // 2, args.boxes), rng.integers(0, h // 2, args.boxes)
    boxes = np.stack([x0, y0, x0 + w // 3, y0 + h // 3], axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in"
        inp.mkdir()
        np.savez(inp / "2DBox_XRay_large.npz", imgs=image, boxes=boxes)
        done = subprocess.run(
            [sys.executable, "-m", "litemedsam", "infer", "-i", str(inp), "-o", str(Path(tmp) / "out")],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    bound = 0.6e9 + image.nbytes + 9 * h * w
    print(f"image {w}x{h}x{args.channels} ({image.nbytes / 1e9:.2f} GB), {args.boxes} boxes: exit {done.returncode}, "
          f"peak RSS {peak / 1e9:.2f} GB; bound 0.6 GB + image + 9 B/px = {bound / 1e9:.2f} GB; "
          f"2 x image + 1 GB = {(2 * image.nbytes + 1e9) / 1e9:.2f} GB")
    if done.returncode:
        print(done.stderr.strip()[-500:])
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
