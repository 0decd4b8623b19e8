"""``litemedsam serve --protocol nninteractive`` driven by the real nninteractive-client, as 3D Slicer drives it,
on the labelled dev volumes: time per interaction, the server's memory, and Dice.

    python -m benchmarks.bench_protocol [--match TEXT] [--clicks 5] [--no-infer] [--restart]

Per volume (one server process for all, as a user keeps it running): ``set_image``; at once (cold: the background
encoder has just started) a box on the ground truth's largest slice of its first object, as Slicer sends one (no
z-range); undo; then, after the background encoding has finished (warm), the same box, a point (the 2025 protocol's
next click), undo. Then per object: that box (no z-range) and the protocol's clicks, each as a point, Dice after the
box and after the clicks, next to ``infer``'s on the same volume (its 3D box with the z-range, then the same
protocol: benchmarks.bench_clicks, in this process). Prints seconds per interaction and the server's peak resident
memory (VmHWM) after each volume. The server keeps no embeddings on disk (``--disk-cache-mb 0``: every volume is
new to it); ``--restart`` adds the first box after a restart, with them (``after_restart``).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
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
    """``litemedsam serve --protocol nninteractive`` in its own process (``options`` added), in ``folder``;
    ``program``: the litemedsam to run (default this tree's, with this Python), ``env``: its environment."""

    def __init__(self, folder: Path, *options, key: str = KEY, program: list | None = None, env: dict | None = None):
        import httpx

        self.port, self.folder, self.key = free_port(), folder, key
        self.url = f"http://127.0.0.1:{self.port}"
        program = program or [sys.executable, "-m", "litemedsam"]
        env = env or {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([*map(str, program), "serve", "--protocol", "nninteractive", "--port",
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


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def wait_encoded(session) -> float:
    start = time.perf_counter()
    while True:
        status = session.lease_status()
        if status["encoded_slices"] >= status["slices"]:
            return time.perf_counter() - start
        time.sleep(0.1)  # polling the server's own count


def protocol_chain(session, image, gts, steps) -> tuple:
    """Per object: a target buffer, the box without z-range, ``steps`` protocol clicks: (Dice per step, buffers)."""
    from benchmarks.bench_clicks import classes, next_click

    scores, final = [], np.zeros_like(gts)
    for c in classes(gts):
        buf = np.zeros(image.shape, np.uint8)
        session.set_target_buffer(buf)
        session.add_bbox_interaction(largest_slice_box(gts == c), include_interaction=True)
        seq = [dice(buf > 0, gts == c)]
        for _ in range(steps):
            click = next_click(buf.astype(gts.dtype) * c, gts, c)
            if click is None:
                seq.append(seq[-1])
                continue
            kind, at = click
            session.add_point_interaction(list(at), include_interaction=kind == "fg")
            seq.append(dice(buf > 0, gts == c))
        scores.append(seq)
        final[(buf > 0) & (final == 0)] = c
    return np.mean(scores, axis=0), final


def infer_chain(name: str, dev: Path, steps: int) -> list:
    from benchmarks.bench_clicks import InProcess, run_case

    return run_case(name, dev, InProcess(), steps, True)["dsc"]


def main(argv=None) -> int:
    from benchmarks.bench_clicks import next_click
    from litemedsam.models.registry import dev_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--match", default="")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--no-infer", action="store_true", help="skip infer's chain (Dice of the protocol only)")
    parser.add_argument("--restart", action="store_true", help="also the first box after a restart: a server "
                        "encodes the volume (its embeddings kept on disk), a new one is sent it again")
    args = parser.parse_args(argv)
    dev = dev_data_dir()
    names = sorted(p.name for p in (dev / "imgs").glob("3DBox_*.npz") if args.match in p.name)
    with tempfile.TemporaryDirectory() as tmp:
        server = Served(Path(tmp), "--disk-cache-mb", 0)  # every volume new to it, whatever ran before
        try:
            print(f"{'volume':48s} {'shape':>14s} set_image  box cold  warm after  box warm  point  undo   "
                  f"peak MB | Dice box, after clicks: protocol (no z-range) | infer (z-range)", flush=True)
            for name in names:
                data = np.load(dev / "imgs" / name)
                gts = np.load(dev / "gts" / name)["gts"]
                image = data["imgs"]
                spacing = list(data["spacing"][::-1]) if "spacing" in data else None
                s = server.session()
                t_set = timed(s.set_image, image[None], {"spacing": spacing} if spacing else {})
                buf = np.zeros(image.shape, np.uint8)
                s.set_target_buffer(buf)
                first = gts == int(np.unique(gts)[1])
                box = largest_slice_box(first)
                t_cold = timed(s.add_bbox_interaction, box, include_interaction=True)
                s.undo()
                t_wait = wait_encoded(s)
                t_warm = timed(s.add_bbox_interaction, box, include_interaction=True)
                click = next_click(buf.astype(np.uint8), first.astype(np.uint8), 1)
                kind, at = click if click is not None else ("fg", box_centre(box))
                t_point = timed(s.add_point_interaction, list(at), include_interaction=kind == "fg")
                t_undo = timed(s.undo)
                chain, _ = protocol_chain(s, image, gts, args.clicks)
                s.close()
                theirs = infer_chain(name, dev, args.clicks) if not args.no_infer else [np.nan] * 2
                restarted = after_restart(Path(tmp), image, spacing, box) if args.restart else np.nan
                print(f"{name[:48]:48s} {'x'.join(map(str, image.shape)):>14s} {t_set:9.2f} {t_cold:9.2f} "
                      f"{t_wait:10.1f} {t_warm:9.2f} {t_point:6.2f} {t_undo:5.2f} {server.peak_mb():9.0f} | "
                      f"{100 * chain[0]:6.2f} {100 * chain[-1]:6.2f} | {100 * theirs[0]:6.2f} {100 * theirs[-1]:6.2f}"
                      f" | restarted {restarted:5.2f}", flush=True)
        finally:
            server.close()
    return 0


def after_restart(folder: Path, image: np.ndarray, spacing, box: list) -> float:
    """Seconds of the first box after a restart: one server encodes the volume (its embeddings kept on disk, in a
    cache folder of its own that starts with this machine's timing records), then a new one is sent it again."""
    import shutil

    from litemedsam.core.settings import cache_dir

    cache = folder / "restart-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(mode=0o700)
    for record in (cache_dir().glob("*.json") if cache_dir() else []):
        shutil.copy(record, cache)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITEMEDSAM_CACHE_DIR": str(cache)}
    seconds = np.nan
    for first in (True, False):
        server = Served(folder, env=env)
        try:
            s = server.session()
            s.set_image(image[None], {"spacing": spacing} if spacing else {})
            s.set_target_buffer(np.zeros(image.shape, np.uint8))
            seconds = timed(s.add_bbox_interaction, box, include_interaction=True)
            if first:
                wait_encoded(s)
            s.close()
        finally:
            server.close()
    return seconds


def box_centre(box: list) -> list:
    return [(lo + hi - 1) // 2 for lo, hi in box]


if __name__ == "__main__":
    raise SystemExit(main())
