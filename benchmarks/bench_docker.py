"""Image size and wall seconds of `docker run` (container start included), as the challenge runs us:

    python -m benchmarks.bench_docker [--image litemedsam:latest] [--against IMAGE] [--repeat 3]

Prints the image size, the median seconds of a run on an empty input folder (the container
overhead), and of one 2D and one 3D dev case, next to `litemedsam infer` on the host, or next to
another image (``--against``), run for run interleaved.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from litemedsam.models.registry import dev_data_dir

REPO = Path(__file__).resolve().parent.parent
DEV = dev_data_dir() / "imgs"
CASES = ["2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz", "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz"]


def timed(cmd) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def predict(image: str, inp: Path, out: Path) -> float:
    return timed(["docker", "run", "--rm", "-m", "8G", "--network", "none", "-v", f"{inp}:/workspace/inputs",
                  "-v", f"{out}:/workspace/outputs", image, "/bin/bash", "-c", "sh predict.sh"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="litemedsam:latest")
    parser.add_argument("--against", metavar="IMAGE", help="time this image instead of the host")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for image in filter(None, (args.image, args.against)):
        size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                                  capture_output=True, text=True, check=True).stdout)
        print(f"image {image}: {size / 1e6:.0f} MB")
    for name in [None] + CASES:
        docker, host = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                inp, out = Path(tmp) / "in", Path(tmp) / "out"
                inp.mkdir()
                out.mkdir()
                out.chmod(0o777)
                if name:
                    shutil.copy(DEV / name, inp / name)
                docker.append(predict(args.image, inp, out))
                host.append(
                    predict(args.against, inp, out)
                    if args.against
                    else timed(
                        [sys.executable, "-m", "litemedsam", "infer", "-i", str(inp), "-o", str(Path(tmp) / "h")]
                    )
                )
        label = name or "empty input folder"
        other = args.against or "host"
        print(f"{label:60s} {args.image} {statistics.median(docker):6.2f} s   {other} {statistics.median(host):6.2f} s"
              f"   (median of {args.repeat})")


if __name__ == "__main__":
    main()
