"""Mask strategies (litemedsam.core.masks) per modality of the dev cases: DSC, NSD and seconds of the reference's
masks against each strategy and combinations, and which pass the shipping rule.

    python -m benchmarks.bench_strategies [--cases DIR] [--match TEXT] [--config clip=5 component=largest ...]
                                          [--save FILE.json] [--load FILE.json]

A configuration is ``exact`` or comma-separated strategies: ``clip=M``, ``component=largest|centre``,
``fill``, ``overlap=logit|smaller``, and in 3D ``smooth=R``, ``middle``. Every configuration runs on every case in
this process with one LiteMedSAM segmenter, one case after the other (interleaved: the machine's noise falls on
all alike). 3D cases keep the router's propagation options (MR: stride 2) in every configuration but ``exact``.

Each image or slice is encoded once per case and its embedding reused by every configuration (a strategy
changes what is decoded), and each configuration's seconds are its decoding, mask work and painting plus
its encoder calls at the case's mean seconds per encoder call; ``cost`` is the difference to ``base`` (the
router without mask strategies) as a share of base's seconds. Each strategy is judged against ``base`` per
modality by the shipping rule (benchmarks/shipping.py), each criterion printed. ``--save`` keeps every case's
scores in a JSON file, ``--load`` prints the tables from such a file without running anything.
"""
from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from evaluation.compute_metrics import case_metrics
from litemedsam.io.formats.challenge import load_case
from litemedsam.core.masks import EXACT, MaskPolicy
from litemedsam.methods.pipeline import segment_case
from litemedsam.models.registry import dev_data_dir
from litemedsam.methods.router import Router
from litemedsam.models.segmenter import make_segmenter

from benchmarks import shipping

DEFAULT_CONFIGS = ["clip=0", "clip=5", "clip=10", "component=largest", "component=centre", "fill", "overlap=logit",
                   "overlap=smaller", "clip=5,component=centre,fill", "clip=5,component=largest,fill,overlap=logit"]


def parse(config: str) -> MaskPolicy:
    if config in ("exact", "base"):
        return EXACT
    options: dict = {}
    for part in config.split(","):
        key, _, value = part.partition("=")
        options[key] = True if key in ("fill", "middle") else (int(value) if key in ("clip", "smooth") else value)
    return MaskPolicy(**options)


class MemoEncoder:
    """A segmenter whose ``encode`` remembers the embedding of every image it saw (by content)."""

    def __init__(self, seg):
        self.seg, self.memo, self.encode_seconds, self.calls = seg, {}, 0.0, 0

    def __getattr__(self, name):
        return getattr(self.seg, name)

    def slice_encoders(self) -> list:
        return []  # one slice at a time, through the memo (litemedsam.methods.pipeline.Ahead is not asked)

    def encode(self, image):
        self.calls += 1
        key = (image.shape, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest())
        if key not in self.memo:
            start = time.perf_counter()
            self.memo[key] = self.seg.encode(image)
            self.encode_seconds += time.perf_counter() - start
        return self.memo[key]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--config", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--match", default="")
    shipping.add_record_options(parser)
    args = parser.parse_args(argv)
    if args.load:
        print_tables(*shipping.load(args.load))
        return 0
    configs = ["exact", "base", *args.config]
    router = Router.load()
    seg = make_segmenter("litemedsam")
    cases = []  # {"case", "group", "scores": {config: [dsc, nsd, seconds]}}
    paths = [p for p in sorted((args.cases / "imgs").glob("*.npz")) if args.match in p.name]
    for n, path in enumerate(paths):
        case = load_case(path)
        routed = router.decide(path.name, dim=case.dim)
        with np.load(args.cases / "gts" / path.name) as npz:
            gts = npz["gts"]
            spacing = npz["spacing"] if case.dim == "3D" else None  # 2D is scored in pixels
        memo = MemoEncoder(seg)
        for image in ([case.image] if case.dim == "2D" else []):
            memo.encode(image)  # 3D slices are encoded by the first configuration that needs them
        scores = {}
        for config in configs[n % len(configs):] + configs[:n % len(configs)]:  # a different first one per case
            d = router.decide(path.name, dim=case.dim, exact=config == "exact")
            start = time.perf_counter()
            encoded, calls = memo.encode_seconds, memo.calls
            segs = segment_case(memo, case, replace(d.propagation, policy=parse(config)))
            seconds = time.perf_counter() - start - (memo.encode_seconds - encoded)
            dsc, nsd = case_metrics(gts, segs, spacing)
            scores[config] = (dsc, nsd, seconds, memo.calls - calls)
        per_encode = memo.encode_seconds / len(memo.memo)
        # seconds a real run takes: this configuration's work plus its encoder calls
        cases.append({"case": path.name, "group": f"{case.dim} {routed.modality}",
                      "scores": {c: [float(scores[c][0]), float(scores[c][1]), scores[c][2] + scores[c][3] * per_encode]
                                 for c in configs}})
        print("  ".join([path.name[:56]] + [f"{c} {100 * scores[c][0]:.1f}/{100 * scores[c][1]:.1f}" for c in configs]),
              flush=True)
        shipping.save(args.save, configs, cases)
    print_tables(configs, cases)
    return 0


def print_tables(configs: list, cases: list) -> None:
    """Per modality: each configuration's scores and cost against ``base``, then the shipping rule's criteria."""
    groups = sorted({c["group"] for c in cases})
    print("\n| cases | configuration | DSC | NSD | vs base: DSC, NSD | worst case DSC | cost |")
    print("|---|---|---|---|---|---|---|")
    for group in groups:
        rows = {config: np.array([c["scores"][config] for c in cases if c["group"] == group]) for config in configs}
        base = rows["base"]
        for config in configs:
            r = rows[config]
            delta = 100 * (r[:, :2] - base[:, :2])
            cost = (r[:, 2].sum() - base[:, 2].sum()) / base[:, 2].sum()
            print(
                f"| {group} ({len(r)}) | {config} | {100 * r[:, 0].mean():.2f} | {100 * r[:, 1].mean():.2f} | "
                f"{delta[:, 0].mean():+.2f}, {delta[:, 1].mean():+.2f} | {delta[:, 0].min():+.2f} | "
                f"{100 * cost:+.1f}% |"
            )
    shipping.print_rule(cases, [c for c in configs if c != "exact"], against="base")


if __name__ == "__main__":
    raise SystemExit(main())
