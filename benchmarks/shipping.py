"""The shipping rule: when a strategy may become a default of the router, judged per modality (2D/3D x modality)
on the dev cases of that modality against the configuration it would replace. Dev cases are few (2-8 per
modality), so a mean alone cannot tell a strategy from luck; every criterion must hold:

- (n) at least ``MIN_CASES`` dev cases in the modality (fewer: nothing ships there);
- (a) mean DSC rises by at least ``gain`` points and mean NSD does not fall (``gain`` is 0.5 for a strategy
  that is there to be more accurate; 0 for one that is there to be faster: it may not be less accurate);
- (b) at least two thirds of the cases improve or tie (a DSC delta of -0.1 point or more);
- (c) no case loses more than ``MAX_LOSS`` DSC points;
- (d) with any one case left out, the mean DSC delta of the others stays >= 0.

    verdict = judge(dsc_deltas, nsd_deltas)      # per case, in points
    verdict.passes, verdict.cells()              # the table's columns
    print_rule(cases, configs, against="base")   # the benchmarks' per-case scores, judged per modality
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GAIN = 0.5  # points of mean DSC an accuracy strategy must add
TIE = 0.1  # a case whose DSC moves by at most this many points ties
SHARE = 2 / 3  # of the cases must improve or tie
MAX_LOSS = 2.0  # DSC points any one case may lose at most
MIN_CASES = 4

HEADER = "| n >= 4 | (a) mean DSC, NSD | (b) improve or tie | (c) worst case DSC | (d) leave-one-out min | passes |"
RULE = "|---|---|---|---|---|---|"


@dataclass(frozen=True)
class Verdict:
    n: int
    dsc: float  # mean DSC delta, points
    nsd: float  # mean NSD delta, points
    ties_or_better: int  # cases with a DSC delta >= -TIE
    worst: float  # the lowest DSC delta of a case
    leave_one_out: float  # the lowest mean DSC delta with one case left out
    gain: float

    @property
    def criteria(self) -> dict:
        return {
            "n": self.n >= MIN_CASES,
            "a": self.dsc >= self.gain and self.nsd >= 0,
            "b": self.ties_or_better >= SHARE * self.n,
            "c": self.worst >= -MAX_LOSS,
            "d": self.leave_one_out >= 0,
        }

    @property
    def passes(self) -> bool:
        return all(self.criteria.values())

    def cells(self) -> list:
        """The table's cells (HEADER), each value with its criterion's yes/no."""
        ok = {k: "yes" if v else "**no**" for k, v in self.criteria.items()}
        return [f"{self.n} {ok['n']}", f"{self.dsc:+.2f}, {self.nsd:+.2f} {ok['a']}",
                f"{self.ties_or_better}/{self.n} {ok['b']}", f"{self.worst:+.2f} {ok['c']}",
                f"{self.leave_one_out:+.2f} {ok['d']}", "**yes**" if self.passes else "no"]


def judge(dsc: list, nsd: list, gain: float = GAIN) -> Verdict:
    """The verdict on per-case DSC and NSD deltas (points, strategy minus the configuration it would replace)."""
    d, s = np.asarray(dsc, float), np.asarray(nsd, float)
    n = len(d)
    if n == 0:
        return Verdict(0, 0.0, 0.0, 0, 0.0, 0.0, gain)
    leave_one_out = (d.sum() - d) / (n - 1) if n > 1 else d
    return Verdict(n, float(d.mean()), float(s.mean()), int((d >= -TIE).sum()), float(d.min()),
                   float(leave_one_out.min()), gain)


def print_rule(cases: list, configs: list, against: str, gain: float = GAIN) -> None:
    """The rule's table for every configuration but ``against`` per modality; ``cases``: the benchmarks' records,
    ``{"case", "group", "scores": {config: [dsc, nsd, ...]}}`` with scores in 0-1."""
    print(f"\nShipping rule (benchmarks/shipping.py) against {against}, gain {gain:+.1f}:\n")
    print(f"| cases | configuration {HEADER}\n|---|---{RULE}")
    for group in sorted({c["group"] for c in cases}):
        mine = [c["scores"] for c in cases if c["group"] == group]
        for config in configs:
            if config == against:
                continue
            delta = 100 * np.array([[s[config][0] - s[against][0], s[config][1] - s[against][1]] for s in mine])
            print(f"| {group} | {config} | " + " | ".join(judge(delta[:, 0], delta[:, 1], gain).cells()) + " |")


def add_record_options(parser) -> None:
    """--save FILE (every case's scores as they come) and --load FILE (the tables of such a file, nothing run)."""
    parser.add_argument("--save", type=Path, help="write every case's scores to this JSON file")
    parser.add_argument("--load", type=Path, help="print the tables of a --save file (nothing is run)")


def save(path: Path | None, configs: list, cases: list) -> None:
    if path is not None:
        path.write_text(json.dumps({"configs": configs, "cases": cases}, indent=1))


def load(path: Path) -> tuple:
    saved = json.loads(path.read_text())
    return saved["configs"], saved["cases"]
