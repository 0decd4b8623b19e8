"""A RECIST line -> its lesion in 3D (the 2026 pan-cancer task; a line in any report): each line becomes a 3D box
segmented as ``infer`` segments one, from the line's slice both ways until the lesion ends. The rule (``LINE_RULE``,
measured by ``python -m benchmarks.bench_recist`` on the dev lesions and the dev volumes' objects, docs/recist.md):

- the box on the line's slice: a square of ``side`` times the line's length around its middle (the organisers'
  baseline prompt), the lesion being within a circle of its longest diameter;
- the slices it may reach: ``reach`` times half the line's length in mm each way (a lesion is about as deep as it
  is wide), at least one slice each way;
- where it ends: ``stop`` slices in a row whose mask is empty or below ``shrink`` of the largest so far
  (litemedsam.methods.propagation.Propagation).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from litemedsam.io.cases import Case, make_case
from litemedsam.io.lines import Line


@dataclasses.dataclass(frozen=True)
class LineRule:
    side: float = 1.0  # the box's side over the line's length
    reach: float = 1.5  # the slices each way over half the line's length (mm)
    stop: int = 1
    shrink: float = 0.3

    def box(self, line: Line, spacing, shape: tuple) -> list:
        """[x0, y0, z0, x1, y1, z1] of ``line`` in a volume of ``shape`` (z, y, x) with ``spacing`` (mm, z, y, x;
        None: cubes)."""
        sz, sy, sx = spacing or (1.0, 1.0, 1.0)
        length = line.length_mm(spacing)
        cy, cx = line.centre
        half_y, half_x = self.side * length / 2 / sy, self.side * length / 2 / sx
        slices = max(1, math.ceil(self.reach * length / 2 / sz))
        return [cx - half_x, cy - half_y, max(0, line.z - slices),
                cx + half_x, cy + half_y, min(shape[0] - 1, line.z + slices)]


LINE_RULE = LineRule()


def as_boxes(case: Case, rule: LineRule = LINE_RULE) -> Case:
    """``case`` (with ``lines``) as a case of 3D boxes, lesion k's box k, each starting on its line's slice."""
    spacing, lines = case.geometry.spacing, case.lines or []
    boxes = [rule.box(line, spacing, case.image.shape) for line in lines]
    made = make_case(case.path, case.image, np.array(boxes, np.float64).reshape(-1, 6), dim="3D",
                     starts=[line.z for line in lines], fmt=case.fmt, geometry=case.geometry,
                     modality=case.modality)
    return dataclasses.replace(case, boxes=made.boxes, skipped=made.skipped, starts=made.starts)


def with_end(decision, rule: LineRule = LINE_RULE):
    """The router's 3D ``decision`` for a case of lines: propagated, ending by the rule (the router's own rule
    knows where a box ends; a line does not)."""
    how = dataclasses.replace(decision.propagation, strategy="propagate", stop=rule.stop, shrink=rule.shrink)
    return dataclasses.replace(decision, propagation=how)
