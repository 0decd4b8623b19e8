"""Cases per minute with one process (all threads) against worker processes (one thread each) and a local Dask
cluster (as many single-threaded workers), and how one encoder call scales with threads: what a machine with
more cores should expect.

    python -m benchmarks.bench_scale [--cases DIR] [--match 2DBox] [--workers 2] [--repeat 2] [--no-dask]

Each configuration runs ``litemedsam infer`` on the same cases in turn (interleaved, ``--repeat`` rounds).
The Dask scheduler and workers are started once, before the rounds (their start-up is printed, not counted);
each run still makes its model sessions on every worker. ``--match ''``: all cases.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from litemedsam.models.registry import dev_data_dir, get_model, model_files
from litemedsam.models.session import available_cpus, make_session

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


@contextlib.contextmanager
def local_cluster(workers: int, threads: int):
    """The address of a Dask scheduler with ``workers`` workers of one task and ``threads`` ONNX threads each,
    all on 127.0.0.1, stopped on exit."""
    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "LITEMEDSAM_THREADS": str(threads)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "cwd": REPO}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], **quiet)]
    procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                "--no-dashboard"], **quiet) for _ in range(workers)]
    try:
        with Client(address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def run_configs(configs: dict, names: list, imgs: Path, repeat: int) -> dict:
    """Seconds per configuration (its infer arguments), each run in turn over the same cases, ``repeat`` rounds."""
    seconds: dict = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in"
        inp.mkdir()
        for name in names:
            (inp / name).symlink_to((imgs / name).resolve())
        order = list(enumerate(configs.items()))
        for r in range(repeat):
            for n, (config, extra) in (order if r % 2 == 0 else reversed(order)):
                out = Path(tmp) / f"out{r}-{n}"
                start = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", str(inp), "-o", str(out),
                                       "--quiet", *extra], capture_output=True, text=True, cwd=REPO)
                seconds[config].append(time.perf_counter() - start)
                if done.returncode:
                    print(f"{config}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--match", default="2DBox")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-dask", dest="dask", action="store_false", help="skip the local Dask cluster")
    args = parser.parse_args(argv)
    cpus = available_cpus()
    each = max(1, cpus // args.workers)
    imgs = args.cases / "imgs" if (args.cases / "imgs").is_dir() else args.cases
    names = sorted(p.name for p in imgs.glob("*.npz") if args.match in p.name)
    configs = {f"1 process x {cpus} threads": [], f"{args.workers} workers x {each} thread(s)":
               ["--workers", str(args.workers)]}
    with contextlib.ExitStack() as stack:
        if args.dask:
            start = time.perf_counter()
            address = stack.enter_context(local_cluster(args.workers, each))
            print(f"local Dask cluster ({args.workers} workers x {each} thread(s)) up in "
                  f"{time.perf_counter() - start:.1f} s")
            configs[f"Dask, {args.workers} workers x {each} thread(s)"] = ["--scheduler", address]
        seconds = run_configs(configs, names, imgs, args.repeat)
    print(f"{len(names)} cases ({args.match or 'all'}), {cpus} CPUs available")
    base = np.median(seconds[next(iter(configs))])
    for config, values in seconds.items():
        m = float(np.median(values))
        print(f"  {config:34s} {m:7.1f} s  {60 * len(names) / m:6.0f} cases/min  ratio {m / base:.3f}")
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
