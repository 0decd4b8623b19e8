"""``litemedsam serve nninteractive`` driven by the real nninteractive-client, as 3D Slicer drives it,
on the labelled dev volumes: time per interaction, the server's memory, and Dice.

    python -m benchmarks.bench_protocol [--match TEXT] [--clicks 5] [--no-infer] [--restart] [--views]

Per volume (one server process for all, as a user keeps it running): ``set_image``; at once (cold: the background
encoder has just started) a box on the ground truth's largest slice of its first object, as Slicer sends one (no
z-range); undo; then, after the background encoding has finished (warm), the same box, a point (the 2025 protocol's
next click), undo. Then per object: that box (no z-range) and the protocol's clicks, each as a point, Dice after the
box and after the clicks, next to ``infer``'s on the same volume (its 3D box with the z-range, then the same
protocol: benchmarks.bench_clicks, in this process). Prints seconds per interaction and the server's peak resident
memory (VmHWM) after each volume. The server keeps no embeddings on disk (``--disk-cache-mb 0``: every volume is
new to it); ``--restart`` adds the first box after a restart, with them (``after_restart``). ``--views`` instead
times boxes in a coronal view (``views``).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from evaluation.served import REPO, Served, largest_slice_box, slice_box, wait_encoded
from litemedsam.core.masks import dice


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def protocol_chain(session, image, gts, steps) -> tuple:
    """Per object: a target buffer, the box without z-range, ``steps`` protocol clicks: (Dice per step, buffers)."""
    from evaluation.interactive import classes, next_click

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
    from evaluation.interactive import InProcess, run_case

    return run_case(name, dev, InProcess(), steps, True)["dsc"]


def main(argv=None) -> int:
    from evaluation.interactive import next_click
    from litemedsam.models.registry import dev_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--match", default="")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--no-infer", action="store_true", help="skip infer's chain (Dice of the protocol only)")
    parser.add_argument("--restart", action="store_true", help="also the first box after a restart: a server "
                        "encodes the volume (its embeddings kept on disk), a new one is sent it again")
    parser.add_argument("--views", action="store_true", help="boxes in a coronal view: the first object's, then, "
                        "once that view's cuts are encoded ahead, the second object's, next to its axial box")
    args = parser.parse_args(argv)
    dev = dev_data_dir()
    names = sorted(p.name for p in (dev / "imgs").glob("3DBox_*.npz") if args.match in p.name)
    if args.views:
        return views(dev, names)
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


def views(dev: Path, names: list) -> int:
    """Per volume with two objects or more (a server of its own, no disk store): its slices encoded, a box on the
    largest coronal cut of its first object (its cuts encoded as reached), then, once the background encoder of
    that view has settled (every cut, or the memory cache full), the second object's coronal box and its axial
    box: seconds and Dice each."""
    print(f"{'volume':48s} coronal 1st: s  Dice  cuts ahead  coronal 2nd: s  Dice  axial 2nd: s  Dice", flush=True)
    for name in names:
        gts = np.load(dev / "gts" / name)["gts"]
        objects = [gts == v for v in np.unique(gts)[1:3]]
        if len(objects) < 2:
            continue
        image = np.load(dev / "imgs" / name)["imgs"]
        with tempfile.TemporaryDirectory() as tmp:
            server = Served(Path(tmp), "--disk-cache-mb", 0)
            try:
                s = server.session()
                s.set_image(image[None], {})
                buf = np.zeros(image.shape, np.uint8)
                s.set_target_buffer(buf)
                wait_encoded(s)

                def box(gt, axis):
                    s.reset_interactions()
                    buf[:] = 0
                    seconds = timed(s.add_bbox_interaction, slice_box(gt, axis), include_interaction=True)
                    return seconds, 100 * dice(buf > 0, gt)
                first = box(objects[0], 1)
                counts: list = []
                while len(counts) < 20 or counts[-1] != counts[-20]:  # settled: no cut for 10 s
                    done, total = s.lease_status()["encoded_cuts"].get("y", [0, 1])
                    counts.append(done)
                    if done >= total:
                        break
                    time.sleep(0.5)  # polling the server's own count
                second, axial = box(objects[1], 1), box(objects[1], 0)
                print(f"{name[:48]:48s} {first[0]:14.2f} {first[1]:5.1f} {counts[-1]:11d} {second[0]:15.2f} "
                      f"{second[1]:5.1f} {axial[0]:13.2f} {axial[1]:5.1f}", flush=True)
                s.close()
            finally:
                server.close()
    return 0


def box_centre(box: list) -> list:
    return [(lo + hi - 1) // 2 for lo, hi in box]


if __name__ == "__main__":
    raise SystemExit(main())
