"""``litemedsam serve nninteractive`` in a process of its own, driven by the real nninteractive-client
as 3D Slicer drives it (a session with the server's key), and what Slicer sends: a box on the largest slice of an
object, no z-range. Used by benchmarks/bench_protocol.py and the tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from litemedsam.core.masks import dice

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-key-" + "x" * 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``litemedsam serve nninteractive`` in its own process (``options`` added), in ``folder``;
    ``program``: the litemedsam to run (default this tree's, with this Python), ``env``: its environment."""

    def __init__(self, folder: Path, *options, key: str = KEY, program: list | None = None, env: dict | None = None):
        import httpx

        self.port, self.folder, self.key = free_port(), folder, key
        self.url = f"http://127.0.0.1:{self.port}"
        program = program or [sys.executable, "-m", "litemedsam"]
        env = env or {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([*map(str, program), "serve", "nninteractive", "--port",
                                      str(self.port), *map(str, options)], cwd=folder,
                                     env={**env, "NN_INTERACTIVE_API_KEY": key},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)  # polling for the server to listen
        raise RuntimeError(f"the server did not start: {self.proc.communicate(timeout=10)}")

    def session(self, key: str | None = None):
        from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession

        return nnInteractiveRemoteInferenceSession(self.url, api_key=self.key if key is None else key,
                                                   read_timeout=600)

    def peak_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> tuple:
        self.proc.terminate()  # uvicorn finishes the requests under way first
        try:
            return self.proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def largest_slice_box(gt: np.ndarray) -> list:
    """The box of ``gt`` on its largest axial slice, half-open [[k, k+1], [y0, y1], [x0, x1]], as Slicer sends."""
    k = int(np.argmax(gt.sum(axis=(1, 2))))
    ys, xs = np.nonzero(gt[k])
    return [[k, k + 1], [int(ys.min()), int(ys.max()) + 1], [int(xs.min()), int(xs.max()) + 1]]


def slice_box(gt: np.ndarray, axis: int) -> list:
    """A box drawn on the object's largest cut along ``axis`` (0: a slice, 1: coronal, 2: sagittal), half-open, as
    Slicer sends it."""
    others = tuple(a for a in range(3) if a != axis)
    k = int(np.argmax(gt.sum(axis=others)))
    where = np.nonzero(np.take(gt, k, axis=axis))
    box = [[int(w.min()), int(w.max()) + 1] for w in where]
    box.insert(axis, [k, k + 1])
    return box


def box_dice(session, dev: Path, name: str) -> float:
    """A dev volume through ``session`` as Slicer sends it (its spacing, a target buffer, a box on the largest
    slice of object 1, no z-range): the Dice of the 3D object that comes back."""
    data = np.load(dev / "imgs" / name)
    gt = np.load(dev / "gts" / name)["gts"] == 1
    session.set_image(data["imgs"][None], {"spacing": list(data["spacing"][::-1])})
    mask = np.zeros(gt.shape, np.uint8)
    session.set_target_buffer(mask)
    session.add_bbox_interaction(largest_slice_box(gt), include_interaction=True)
    return dice(mask > 0, gt)


def wait_encoded(session) -> float:
    start = time.perf_counter()
    while True:
        status = session.lease_status()
        if status["encoded_slices"] >= status["slices"]:
            return time.perf_counter() - start
        time.sleep(0.1)  # polling the server's own count
