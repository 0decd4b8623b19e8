"""A volume's slices by several encoder sessions at once (litemedsam.models.parallel) on this machine:

    python -m benchmarks.bench_slices [--sessions N] [--repeat 3] [--cases 3DBox_CT_...npz ...]

1. Intra-op scaling: seconds per slice of one session with 1, 2, 4 ... threads, and of each split of all the
   threads into sessions (``time_splits``), with the split ``choose`` takes from it.
2. ``litemedsam infer`` on 3D dev cases, a fresh process per case, one session against ``--sessions N`` (default
   2), interleaved run by run: median seconds, their ratio, and whether the outputs are identical.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from litemedsam.models import parallel
from litemedsam.models.registry import dev_data_dir, get_model, model_files
from litemedsam.models.session import available_cpus, make_session

CASES = ["3DBox_CT_CT_Lesion_000009_03_01_036-048.npz", "3DBox_MR_pyradiomics_brain1.npz",
         "3DBox_CT_TotalSegmentator_example_ct_sm_PSEUDOGT.npz"]


def scaling(path: Path, sha256: str, cpus: int) -> None:
    image = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    for threads in parallel.candidates(cpus):
        session = make_session(path, threads, sha256)
        session.run(None, {"image": image})
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            session.run(None, {"image": image})
            runs.append(time.perf_counter() - start)
        print(f"one session, {threads:2d} thread(s): {statistics.median(runs):.3f} s per slice")
    print(f"splits of {cpus} threads, seconds per slice by sessions at once: "
          f"{parallel.time_splits(path, sha256, cpus)} -> {parallel.choose(cpus).describe()}")


def infer(case: Path, out: Path, sessions: int) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", case.parent, "-o", out, "--quiet"],
                          capture_output=True, text=True, env={**os.environ, parallel.ENV: str(sessions)})
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=CASES)
    args = parser.parse_args()
    cpus = available_cpus()
    (path, sha256), _ = model_files(get_model("litemedsam"))
    print(f"{cpus} CPUs ({os.uname().machine})")
    scaling(path, sha256, cpus)
    for name in args.cases:
        seconds: dict = {1: [], args.sessions: []}
        same = True
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "in"
                folder.mkdir()
                shutil.copy(dev_data_dir() / "imgs" / name, folder / name)
                for sessions in seconds:
                    seconds[sessions].append(infer(folder / name, Path(tmp) / str(sessions), sessions))
                outs = [np.load(Path(tmp) / str(s) / name)["segs"] for s in seconds]
                same &= all(np.array_equal(outs[0], o) for o in outs[1:])
        one, many = (statistics.median(v) for v in seconds.values())
        print(f"{name:55s} 1 session {one:6.2f} s   {args.sessions} sessions {many:6.2f} s   ratio {one / many:.2f}"
              f"   outputs {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
