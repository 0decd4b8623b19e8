"""Cases per minute with one process (all threads) against worker processes (one thread each), and how one
encoder call scales with threads: what a machine with more cores should expect.

    python -m benchmarks.bench_scale [--cases DIR] [--match 2DBox] [--workers 2] [--repeat 2]

Each configuration runs ``litemedsam infer`` on the same cases in turn (interleaved, ``--repeat`` rounds).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from litemedsam.registry import dev_data_dir, get_model, model_files
from litemedsam.session import available_cpus, make_session

REPO = Path(__file__).resolve().parent.parent


def encoder_seconds(threads: int, runs: int = 5) -> float:
    path, sha = model_files(get_model("litemedsam"))[0]
    session = make_session(path, threads, sha)
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    session.run(None, {"image": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"image": x})
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--match", default="2DBox")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    cpus = available_cpus()
    imgs = args.cases / "imgs" if (args.cases / "imgs").is_dir() else args.cases
    names = sorted(p.name for p in imgs.glob("*.npz") if args.match in p.name)
    configs = {f"1 process x {cpus} threads": [], f"{args.workers} workers x {max(1, cpus // args.workers)} thread(s)":
               ["--workers", str(args.workers)]}
    seconds: dict = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in"
        inp.mkdir()
        for name in names:
            (inp / name).symlink_to((imgs / name).resolve())
        for r in range(args.repeat):
            for config, extra in (configs.items() if r % 2 == 0 else reversed(configs.items())):
                out = Path(tmp) / f"out{r}{len(extra)}"
                start = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", str(inp), "-o", str(out),
                                       "--quiet", *extra], capture_output=True, text=True, cwd=REPO)
                seconds[config].append(time.perf_counter() - start)
                if done.returncode:
                    print(f"{config}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    print(f"{len(names)} cases ({args.match or 'all'}), {cpus} CPUs available")
    base = np.median(seconds[next(iter(configs))])
    for config, values in seconds.items():
        m = float(np.median(values))
        print(f"  {config:28s} {m:7.1f} s  {60 * len(names) / m:6.0f} cases/min  ratio {m / base:.3f}")
    one = encoder_seconds(1)
    print(f"one encoder call: 1 thread {one:.3f} s", end="")
    for t in sorted({2, cpus} - {1}):
        if t <= cpus:
            s = encoder_seconds(t)
            print(f", {t} threads {s:.3f} s (speed-up {one / s:.2f}, efficiency {one / s / t:.2f})", end="")
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
