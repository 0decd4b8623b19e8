"""The 2025 challenge's interactive protocol end to end, on the labelled dev cases (as the organisers'
CVPR25_iter_eval.py runs it, rewritten here): a box step, then 5 click steps, each a run of ``infer`` on the case
with the clicks so far, their order and the previous output (``prev_pred``).

    python -m benchmarks.bench_clicks [--dims 3D,2D] [--match TEXT] [--no-boxes] [--in-process] [--clicks 5]
                                      [--docker IMAGE]

Each dev case is written in the 2025 layout (3D: ``boxes`` as dicts, z_mid the middle slice the object is on and
its box there; 2D: its Nx4 boxes, clicks as [0, y, x]); ``--no-boxes`` leaves the boxes out (the first step is
then a click, as the challenge's box-free cases: their box step scores 0 and takes no time). After each step, per
class: the largest 26-connected (2D: 8-connected) error component of the output, its voxel farthest from the
component's border (ties: the organisers' seeded choice), a background click if that voxel is over-segmented,
else a foreground one. Prints per case DSC and NSD after each step, DSC_AUC and NSD_AUC (trapezoids over the 5
click steps, at most 4), the final DSC/NSD and the seconds of each run (a fresh ``litemedsam infer`` process per
run, as the challenge runs a container; ``--docker IMAGE``: the organisers' ``docker container run -m 8G ... sh
predict.sh`` per run; ``--in-process``: one process, models loaded once, for comparing methods quickly), each case's
total seconds against the organisers' bound (90 s per class for its 6 runs), then the means. As the organisers'
script, the output folder keeps the last output between runs: a run that fails leaves it there (it is counted as
that step's output) and is listed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from evaluation.interactive import Docker, InProcess, fresh, run_case
from litemedsam.models.registry import dev_data_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", default="3D,2D")
    parser.add_argument("--match", default="", help="only the cases whose name contains this")
    parser.add_argument("--no-boxes", action="store_true", help="no boxes: the first step is a click")
    parser.add_argument("--in-process", action="store_true", help="one process (for comparing methods)")
    parser.add_argument("--docker", metavar="IMAGE", help="each run in a new container of IMAGE, as the organisers")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--keep-box-steps", type=Path, metavar="DIR",
                        help="keep each case's box-step output in DIR and reuse it (comparing click methods)")
    args = parser.parse_args(argv)
    dev = dev_data_dir()
    dims = tuple(f"{d}Box_" for d in args.dims.split(","))
    names = sorted(p.name for p in (dev / "imgs").glob("*.npz") if p.name.startswith(dims) and args.match in p.name)
    infer = Docker(args.docker) if args.docker else InProcess() if args.in_process else fresh
    results = {}
    print(f"{'case':60s} {'DSC per step':>44s}  DSC_AUC  final DSC/NSD  s per run (box; clicks)  total s / bound")
    for name in names:
        r = results[name] = run_case(name, dev, infer, args.clicks, not args.no_boxes, args.keep_box_steps)
        total = sum(r["seconds"])
        print(f"{name[:60]:60s} {' '.join(f'{100 * d:6.2f}' for d in r['dsc'])}  {r['dsc_auc']:7.3f}  "
              f"{100 * r['dsc'][-1]:6.2f}/{100 * r['nsd'][-1]:6.2f}  {r['seconds'][0]:.2f}; "
              f"{np.mean(r['seconds'][1:]):.2f}  {total:.0f} / {r['bound']:.0f}{'  OVER' if total > r['bound'] else ''}"
              f"{'  FAILED steps ' + str(r['failed']) if r['failed'] else ''}", flush=True)
    for dim in args.dims.split(","):
        rs = [r for n, r in results.items() if n.startswith(f"{dim}Box")]
        if not rs:
            continue
        dsc = np.mean([r["dsc"] for r in rs], axis=0)
        nsd = np.mean([r["nsd"] for r in rs], axis=0)
        gain = [r["dsc"][-1] - r["dsc"][0] for r in rs]
        print(f"{dim} ({len(rs)} cases): DSC per step {' '.join(f'{100 * d:.2f}' for d in dsc)}; NSD per step "
              f"{' '.join(f'{100 * d:.2f}' for d in nsd)}; DSC_AUC {np.mean([r['dsc_auc'] for r in rs]):.3f}, NSD_AUC "
              f"{np.mean([r['nsd_auc'] for r in rs]):.3f}; final - box DSC {100 * np.mean(gain):+.2f} (worst "
              f"{100 * min(gain):+.2f}); s per run: box {np.mean([r['seconds'][0] for r in rs]):.2f}, click "
              f"{np.mean([np.mean(r['seconds'][1:]) for r in rs]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
