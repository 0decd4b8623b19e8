"""The router's faster 3D options against exact propagation, per modality of the dev 3D cases: mean DSC, NSD and
seconds of each configuration, and whether it passes the shipping rule (benchmarks/shipping.py) against exact
with gain 0: a faster option may not be less accurate (mean DSC and NSD not lower, two thirds of the cases
improve or tie, no case loses more than 2 DSC points, the mean holds with any one case left out, 4 cases or more).

    python -m benchmarks.bench_3d [--cases DIR] [--config stride:2 stop:2 stride:2,stop:2 ...] [--match TEXT]
                                  [--save FILE.json] [--load FILE.json]

Each configuration runs every case in this process with one LiteMedSAM segmenter (one case, then the next
configuration on it: interleaved, so that the machine's noise falls on all of them alike). ``--save`` keeps
every case's scores in a JSON file, ``--load`` prints the tables from such a file without running anything.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from evaluation.compute_metrics import case_metrics
from litemedsam.io.formats.challenge import load_case
from litemedsam.methods.pipeline import segment_3d
from litemedsam.methods.propagation import Propagation
from litemedsam.models.registry import dev_data_dir
from litemedsam.methods.router import Router
from litemedsam.models.segmenter import make_segmenter

from benchmarks import shipping


def parse(config: str) -> dict:
    options = {"stride": 1, "stop": 0}
    for part in filter(None, config.split(",")):
        if part != "exact":
            key, _, value = part.partition(":")
            options[key] = int(value)
    return options


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--config", nargs="+", default=["stop:2", "stride:2", "stride:3"])
    parser.add_argument("--match", default="")
    shipping.add_record_options(parser)
    args = parser.parse_args(argv)
    if args.load:
        print_tables(*shipping.load(args.load))
        return 0
    configs = ["exact", *args.config]
    router = Router.load()
    seg = make_segmenter("litemedsam")
    cases = []  # {"case", "group", "scores": {config: [dsc, nsd, seconds]}}
    for path in sorted((args.cases / "imgs").glob("3DBox_*.npz")):
        if args.match not in path.name:
            continue
        case = load_case(path)
        decision = router.decide(path.name, dim="3D", exact=True)
        with np.load(args.cases / "gts" / path.name) as npz:
            gts, spacing = npz["gts"], npz["spacing"]
        scores = {}
        for config in configs:
            start = time.perf_counter()
            segs = segment_3d(
                seg,
                case.image,
                case.boxes,
                case.skipped,
                Propagation(margin=decision.propagation.margin, **parse(config)),
            )
            seconds = time.perf_counter() - start
            dsc, nsd = case_metrics(gts, segs, spacing)
            scores[config] = [float(dsc), float(nsd), seconds]
        cases.append({"case": path.name, "group": f"3D {decision.modality}", "scores": scores})
        print("  ".join([path.name[:60]] + [f"{c} {d:.4f}/{n:.4f} {t:.1f}s" for c, (d, n, t) in scores.items()]),
              flush=True)
        shipping.save(args.save, configs, cases)
    print_tables(configs, cases)
    return 0


def print_tables(configs: list, cases: list) -> None:
    print("\n| cases | configuration | DSC | NSD | seconds | vs exact: DSC, NSD, time |")
    print("|---|---|---|---|---|---|")
    for group in sorted({c["group"] for c in cases}):
        rows = {config: np.array([c["scores"][config] for c in cases if c["group"] == group]) for config in configs}
        exact = rows["exact"]
        for config in configs:
            r = rows[config]
            d_dsc, d_nsd = 100 * (r[:, 0].mean() - exact[:, 0].mean()), 100 * (r[:, 1].mean() - exact[:, 1].mean())
            print(f"| {group} ({len(r)}) | {config} | {100 * r[:, 0].mean():.2f} | {100 * r[:, 1].mean():.2f} | "
                  f"{r[:, 2].sum():.1f} | {d_dsc:+.2f}, {d_nsd:+.2f}, x{r[:, 2].sum() / exact[:, 2].sum():.2f} |")
    shipping.print_rule(cases, configs, against="exact", gain=0.0)


if __name__ == "__main__":
    raise SystemExit(main())
