"""A RECIST line -> the lesion in 3D (the 2026 pan-cancer task): the line rule (litemedsam.methods.recist) measured
on the dev lesions (../shared/data/recist-dev) and on every object of the labelled dev volumes
(../shared/data/cvpr24-dev 3DBox_*), each given a line as the task's README draws one (its largest axial slice;
the two farthest points there, in mm).

    python -m benchmarks.bench_recist [--match TEXT] [--rules NAME,...] [--save FILE | --load FILE] [--timing]

Per object: DSC and NSD (2 mm) from its line, by each rule, next to the same object from its 3D box (the ground
truth's bounding box, as a challenge case gives it: what the line should come close to). One embedding cache per
volume serves every rule (each slice encoded once), so the rules' numbers differ by their prompts only. The
shipping rule (benchmarks/shipping.py, gain 0) judges each rule against the shipped one, per group of objects.
``--timing``: each dev RECIST case through ``litemedsam infer`` in a fresh process, seconds and peak memory.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import shipping
from evaluation.compute_metrics import surface_dice
from litemedsam.core.errors import CaseError
from litemedsam.core.masks import dice
from litemedsam.core.settings import REPO_ROOT
from litemedsam.io import formats
from litemedsam.io.cases import make_case
from litemedsam.io.given_boxes import CaseInputs
from litemedsam.io.lines import farthest
from litemedsam.methods import recist
from litemedsam.methods.pipeline import segment_case
from litemedsam.methods.prompting import BoxPrompting
from litemedsam.methods.router import Router
from litemedsam.models.registry import dev_data_dir
from litemedsam.models.segmenter import Segmenters
from litemedsam.serve.encoding import CachingSegmenter, EmbeddingCache

RECIST_DEV = REPO_ROOT.parent / "shared" / "data" / "recist-dev"
R = recist.LineRule
RULES = {
    "shipped": recist.LINE_RULE,
    "reach 1": R(reach=1.0), "reach 2": R(reach=2.0), "no reach": R(reach=1e6),
    "side 0.8": R(side=0.8), "side 1.2": R(side=1.2),
    "end 2:0.3": R(stop=2), "end 1:0.15": R(shrink=0.15), "end 1:0.5": R(shrink=0.5),
}


def drawn_line(gt: np.ndarray, spacing) -> recist.Line:
    """The line the task's README draws of a 3D mask: on its largest axial slice, the two points farthest apart."""
    z = int(np.argmax(gt.sum(axis=(1, 2))))
    ys, xs = np.nonzero(gt[z])
    return farthest(z, ys, xs, spacing, "object")


def objects(match: str) -> list:
    """(group, volume path, its label map, label) of every dev object: the RECIST dev lesions, then each object of
    the other labelled dev volumes."""
    found = []
    for path in sorted((RECIST_DEV / "imgs").glob("*.npz")):
        if match in path.name:
            found.append(("CT lesion (recist-dev)", path, RECIST_DEV / "gts" / path.name, 1))
    dev = dev_data_dir()
    for path in sorted((dev / "imgs").glob("3DBox_*.npz")):
        if match not in path.name or "CT_Lesion" in path.name:  # the lesions: above, with their own lines
            continue
        labels = np.load(dev / "gts" / path.name)["gts"]
        group = "CT organs" if "_CT_" in path.name else "MR tumours"
        found += [(group, path, dev / "gts" / path.name, int(v)) for v in np.unique(labels) if v]
    return found


def score(seg: np.ndarray, gt: np.ndarray, spacing) -> list:
    d = dice(seg, gt)
    return [d, surface_dice(gt, seg, spacing) if d > 0.2 else 0.0]


def measure(items: list, rules: dict, cache_mb: int) -> list:
    prompting = BoxPrompting(Router.load())
    segmenters = Segmenters()
    records, volume, caching = [], None, None
    for group, path, gts_path, label in items:
        if path != volume:  # a new volume: a new embedding cache
            volume, caching = path, None
            case = formats.read(path, CaseInputs(), require_boxes=False)
            gts = np.load(gts_path)["gts"]
        spacing = case.geometry.spacing or (1.0, 1.0, 1.0)
        gt = gts == label
        boxed = dataclasses.replace(case, lines=None)
        zs = np.flatnonzero(gt.any(axis=(1, 2)))
        ys, xs = np.nonzero(gt.any(axis=0))
        boxed = make_case(case.path, case.image, [[xs.min(), ys.min(), zs[0], xs.max(), ys.max(), zs[-1]]],
                                  dim="3D", geometry=case.geometry, modality=case.modality)
        plan = prompting.choose(boxed)
        if caching is None:
            caching = CachingSegmenter(segmenters.get(plan.model), EmbeddingCache(cache_mb << 20), plan.model)
        try:
            line = drawn_line(gt, case.geometry.spacing)
        except CaseError:  # one pixel on its largest slice: no line to draw
            print(f"{group:24s} {path.name[:44]:44s} {label:3d} skipped: one pixel on its largest slice")
            continue
        scores = {"3D box": score(segment_case(caching, boxed, plan.decision.propagation) == 1, gt, spacing)}
        lined = dataclasses.replace(boxed, lines=[line], boxes=np.zeros((0, 6), np.int64), starts=None)
        for name, rule in rules.items():
            as_box = recist.as_boxes(lined, rule)
            how = recist.with_end(plan.decision, rule).propagation
            scores[name] = score(segment_case(caching, as_box, how) == 1, gt, spacing)
        records.append({"case": f"{path.name} #{label}", "group": group, "scores": scores,
                        "line_mm": round(line.length_mm(case.geometry.spacing), 1)})
        print(f"{group:24s} {path.name[:44]:44s} {label:3d} " + " ".join(
            f"{k} {100 * v[0]:5.1f}/{100 * v[1]:5.1f}" for k, v in scores.items()), flush=True)
    return records


def cut_box(gt: np.ndarray, plane: str) -> tuple:
    """(index, box) of a 3D mask's largest cut of ``plane`` ("z", "y", "x"): the box in the cut's pixels
    (x0, y0, x1, y1: its columns, its rows), as a viewer draws it there."""
    axis = "zyx".index(plane)
    along = np.moveaxis(gt, axis, 0)
    index = int(np.argmax(along.sum(axis=(1, 2))))
    rows, cols = np.nonzero(along[index])
    return index, (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))


BOX_CONFIGS = {"axial": ("z", {"reach": None}), "axial reach 1.5": ("z", {"reach": 1.5}),
               "axial reach 2": ("z", {"reach": 2.0}),
               "coronal cuts": ("y", {"via": "cuts"}), "coronal as 3D": ("y", {"via": "axial"}),
               "sagittal cuts": ("x", {"via": "cuts"}), "sagittal as 3D": ("x", {"via": "axial"})}


def measure_boxes(items: list, configs: dict, cache_mb: int) -> list:
    """Per object, a box on its largest cut of each plane (as 3D Slicer's views send one) through the interactive
    core (litemedsam.serve.scene.Scene.propagate), next to its 3D box."""
    from litemedsam.serve.scene import Scene

    prompting = BoxPrompting(Router.load())
    segmenters = Segmenters()
    records, volume = [], None
    for group, path, gts_path, label in items:
        if path != volume:
            volume = path
            case = dataclasses.replace(formats.read(path, CaseInputs(), require_boxes=False), lines=None)
            gts = np.load(gts_path)["gts"]
            scene = Scene(case, prompting, segmenters, EmbeddingCache(cache_mb << 20))
        spacing = case.geometry.spacing or (1.0, 1.0, 1.0)
        gt = gts == label
        zs, (ys, xs) = np.flatnonzero(gt.any(axis=(1, 2))), np.nonzero(gt.any(axis=0))
        box3d = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))  # as a challenge case's, from its middle
        mask = scene.box_mask(box3d, (int(zs[0]) + int(zs[-1])) // 2, (int(zs[0]), int(zs[-1])))[0]
        scores = {"3D box": score(mask, gt, spacing)}
        for name, (plane, options) in configs.items():
            index, drawn = cut_box(gt, plane)
            start = time.perf_counter()
            scores[name] = score(scene.propagate(drawn, index, plane, **options)[0], gt, spacing) + [
                time.perf_counter() - start]
        records.append({"case": f"{path.name} #{label}", "group": group, "scores": scores})
        print(f"{group:24s} {path.name[:44]:44s} {label:3d} " + " ".join(
            f"{k} {100 * v[0]:5.1f}" for k, v in scores.items()), flush=True)
    return records


def table(records: list, configs: list) -> None:
    print("\nMean DSC / NSD (points) per group of objects:\n")
    print("| group | objects | " + " | ".join(configs) + " |\n|---|---|" + "---|" * len(configs))
    for group in sorted({r["group"] for r in records}):
        mine = [r["scores"] for r in records if r["group"] == group]
        cells = [f"{100 * np.mean([s[c][0] for s in mine]):.1f} / {100 * np.mean([s[c][1] for s in mine]):.1f}"
                 for c in configs]
        print(f"| {group} | {len(mine)} | " + " | ".join(cells) + " |")
    worst = {c: min(100 * (r["scores"][c][0] - r["scores"]["3D box"][0]) for r in records) for c in configs}
    print("\nWorst object against its 3D box (DSC points): " + ", ".join(f"{c} {v:+.1f}" for c, v in worst.items()))


def timing() -> None:
    """Each dev RECIST case through infer in a fresh process: seconds and peak resident memory."""
    print("\n| case | slices | seconds (fresh process) | peak MB |\n|---|---|---|---|")
    for path in sorted((RECIST_DEV / "imgs").glob("*.npz")):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", str(path), "-o", out],
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            if done.returncode:
                print(done.stderr)
        print(f"| {path.name} | {np.load(path)['imgs'].shape[0]} | {seconds:.1f} | {peak:.0f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--match", default="")
    parser.add_argument("--rules", default=",".join(RULES), help="rules to measure, by name: " + ", ".join(RULES))
    parser.add_argument("--cache-mb", type=int, default=4096)
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--boxes", action="store_true", help="a box on one axial, coronal or sagittal slice instead "
                        "of a line (Scene.propagate, as the protocol server takes one)")
    shipping.add_record_options(parser)
    args = parser.parse_args(argv)
    if args.load:
        configs, records = shipping.load(args.load)
    elif args.boxes:
        records = measure_boxes(objects(args.match), BOX_CONFIGS, args.cache_mb)
        configs = ["3D box", *BOX_CONFIGS]
        shipping.save(args.save, configs, records)
    else:
        rules = {name: RULES[name] for name in args.rules.split(",")}
        records = measure(objects(args.match), rules, args.cache_mb)
        configs = ["3D box", *rules]
        shipping.save(args.save, configs, records)
    table(records, configs)
    if "shipped" in configs:
        shipping.print_rule(records, [c for c in configs if c != "3D box"], against="shipped", gain=0.0)
    else:  # each variant against its plane's shipped path: a reach against none, a cut's box as 3D against cuts
        for against, variants in (("axial", ["axial reach 1.5", "axial reach 2"]),
                                  ("coronal cuts", ["coronal as 3D"]), ("sagittal cuts", ["sagittal as 3D"])):
            shipping.print_rule(records, [against, *variants], against=against, gain=0.0)
    if args.timing:
        timing()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
