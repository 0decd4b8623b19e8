"""Latency of ``litemedsam serve`` as a browser sees it: a real server process, requests over HTTP.

    python -m benchmarks.bench_serve [--cases DIR] [--boxes 60]

Prints: page load (the page and its three assets), case open (read + encode the slice shown + first-time
decoder warm-up), box -> mask round trip (the box request and the overlay PNG the page then loads; median and
p95 over ``--boxes`` boxes jittered around each case's own), and a 3D propagation of one object.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from litemedsam.models.registry import dev_data_dir

REPO = Path(__file__).resolve().parent.parent
CASES_2D = ["2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz", "2DBox_CT_SAMMed2D_s0114_111.npz",
            "2DBox_MR_MedScribble-ACDC_patient004_axis2_maxslice.npz"]
CASE_3D = "3DBox_MR_pyradiomics_brain1.npz"
WRITE = {"Content-Type": "application/json", "X-Litemedsam": "1"}
TOKEN = "bench-serve-token-0123456789"  # given to the server as $LITEMEDSAM_SERVE_TOKEN
TOKEN_HEADER = {"X-Litemedsam-Token": TOKEN}


def call(url: str, body=None, method: str | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {**TOKEN_HEADER, **(WRITE if body is not None else {})}, method=method)
    with urllib.request.urlopen(request, timeout=300) as response:
        return response.read()


@contextlib.contextmanager
def served(folder: Path, output: Path):
    """A real ``litemedsam serve`` process of ``folder`` on a free port, answering: its address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "litemedsam",
            "serve",
            "app",
            str(folder),
            "-o",
            str(output),
            "--port",
            str(port),
            "--disk-cache-mb",
            "0",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LITEMEDSAM_SERVE_TOKEN": TOKEN},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                call(url + "/api/cases")
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def timed(fn, *args) -> tuple:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--boxes", type=int, default=60)
    args = parser.parse_args(argv)
    imgs = args.cases / "imgs" if (args.cases / "imgs").is_dir() else args.cases
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for name in [*CASES_2D, CASE_3D]:
            (folder / name).symlink_to((imgs / name).resolve())
        start = time.perf_counter()
        with served(folder, Path(tmp) / "segs") as url:
            print(f"server up (process start to first answer): {time.perf_counter() - start:.2f} s")
            pages = [timed(lambda: [call(url + p) for p in ("/", "/static/app.js", "/static/style.css",
                                                             "/api/cases")])[0] for _ in range(20)]
            print(f"page load (page, script, style, case list): median {1000 * np.median(pages):.1f} ms")
            rounds = []
            for n, name in enumerate(CASES_2D):
                seconds, doc = timed(call, url + "/api/open", {"name": name})
                doc = json.loads(doc)
                print(f"open {name} ({doc['width']} x {doc['height']}): {seconds:.3f} s"
                      + (" (first case: model sessions made)" if n == 0 else ""))
                x0, y0, x1, y1 = np.load(folder / name)["boxes"][0].tolist()
                for _ in range(args.boxes // len(CASES_2D)):
                    jitter = rng.integers(-8, 9, 4)
                    box = [
                        max(0, x0 + int(jitter[0])),
                        max(0, y0 + int(jitter[1])),
                        x1 + int(jitter[2]),
                        y1 + int(jitter[3]),
                    ]
                    start = time.perf_counter()
                    call(f"{url}/api/doc/{doc['id']}/box", {"box": box})
                    call(f"{url}/api/doc/{doc['id']}/labels/0?v={len(rounds)}")
                    rounds.append(time.perf_counter() - start)
                    call(f"{url}/api/doc/{doc['id']}/undo", {})
            ms = 1000 * np.array(rounds)
            print(f"box -> mask round trip ({len(ms)} boxes): median {np.median(ms):.1f} ms, p95 "
                  f"{np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms")
            seconds, doc = timed(call, url + "/api/open", {"name": CASE_3D})
            doc = json.loads(doc)
            print(f"open {CASE_3D} ({doc['depth']} slices of {doc['width']} x {doc['height']}): {seconds:.3f} s")
            x0, y0, z0, x1, y1, z1 = np.load(folder / CASE_3D)["boxes"][0].tolist()
            start = time.perf_counter()
            call(f"{url}/api/doc/{doc['id']}/box", {"box": [x0, y0, x1, y1], "z": z0 + (z1 - z0) // 2,
                                                    "z_range": [z0, z1]})
            while True:
                job = json.loads(call(f"{url}/api/doc/{doc['id']}/job"))
                if job["state"] != "running":
                    break
                time.sleep(0.02)
            print(f"3D propagation of one object over slices {z0}-{z1}: {time.perf_counter() - start:.3f} s "
                  f"({job['state']}, {job['total']} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
