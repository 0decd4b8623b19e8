"""Mask strategies: what is done to an object's mask after the decoder, before it is painted (and, in 3D,
before it prompts the next slice). Each is off unless a router rule turns it on; ``infer --exact`` turns all
of them off (the reference's masks).

- ``clip = M``: pixels farther than M pixels (of a 256 frame) outside the prompt box (the given box, or in
  3D the box propagated from the neighbouring slice) are dropped: the prompt asked for an object in the box.
- ``component = "largest"``: keep only the largest connected component (8-connected) of the mask;
  ``"centre"``: keep the component(s) that hold the prompt box's centre, else the largest one.
- ``fill = true``: fill the holes of the mask (background not connected to the image border).
- ``overlap = "logit"``: where objects' masks overlap, the object with the higher mask logit there wins;
  ``"smaller"``: the object whose mask (on that image or slice) is smaller wins, so that a structure nested in
  another (a tumour core inside oedema, an organ inside a body outline) keeps its place (default ``"label"``:
  the higher label wins, as the reference paints its boxes in order).

3D only, after propagation (each re-prompted slice costs one more encoder call):
- ``smooth = R``: a slice whose mask area is more than R times, or less than 1/R of, both neighbouring
  segmented slices' areas is decoded again, prompted with the box around both neighbours' masks;
- ``middle = true``: the middle slice (prompted with the given box) is decoded again with the box around
  its two neighbours' masks (bidirectional consistency).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

COMPONENTS = ("", "largest", "centre")
OVERLAPS = ("label", "logit", "smaller")


@dataclass(frozen=True)
class MaskPolicy:
    clip: int | None = None  # margin in pixels of a 256 frame; None: no clipping
    component: str = ""
    fill: bool = False
    overlap: str = "label"
    smooth: int = 0  # 3D: area ratio that marks a slice for re-prompting; 0: off
    middle: bool = False  # 3D: re-prompt the middle slice from its neighbours

    @property
    def exact(self) -> bool:
        """The reference's masks: nothing done to them."""
        return self == EXACT

    @property
    def needs_logits(self) -> bool:
        return self.overlap == "logit"

    @property
    def rechecks(self) -> bool:
        """Whether 3D slices are looked at again after propagation."""
        return bool(self.smooth or self.middle)

    def recheck(self, areas: dict, z_mid: int) -> list:
        """The slices of one object to prompt again, from its mask area per segmented slice: (slice, the two
        neighbouring segmented slices whose masks give the new prompt)."""
        zs = sorted(areas)
        out = []
        for a, z, b in zip(zs, zs[1:], zs[2:]):
            lo, hi, here = areas[a], areas[b], areas[z]
            if not (lo and hi):
                continue
            jump = self.smooth and (here > self.smooth * max(lo, hi) or here * self.smooth < min(lo, hi))
            if jump or (self.middle and z == z_mid):
                out.append((z, a, b))
        return out

    def describe(self) -> str:
        parts = ([f"clip {self.clip}"] if self.clip is not None else []) + \
                ([f"{self.component} component"] if self.component else []) + \
                (["fill holes"] if self.fill else []) + (["higher logit wins"] if self.overlap == "logit" else []) + \
                (["smaller object wins"] if self.overlap == "smaller" else []) + \
                ([f"re-prompt area jumps x{self.smooth}"] if self.smooth else []) + \
                (["re-prompt the middle slice"] if self.middle else [])
        return ", ".join(parts) or "exact masks"

    def apply(self, mask: np.ndarray, box: np.ndarray, scale: float) -> np.ndarray:
        """``mask`` (H, W) bool for the prompt ``box`` (x0, y0, x1, y1 in image pixels); ``scale``: image pixels
        per pixel of a 256 frame (``max(H, W) / 256``)."""
        if self.exact or not mask.any():
            return mask
        if self.clip is not None:
            mask = clip_to_box(mask, box, self.clip * scale)
        if self.component:
            mask = keep_component(mask, box, self.component)
        if self.fill:
            mask = fill_holes(mask)
        return mask


EXACT = MaskPolicy()


def clip_to_box(mask: np.ndarray, box, margin: float) -> np.ndarray:
    """``mask`` without the pixels outside ``box`` widened by ``margin`` pixels."""
    h, w = mask.shape
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, r0 = max(0, int(np.floor(x0 - margin))), max(0, int(np.floor(y0 - margin)))
    c1, r1 = min(w, int(np.ceil(x1 + margin)) + 1), min(h, int(np.ceil(y1 + margin)) + 1)
    out = np.zeros_like(mask)
    if c0 < c1 and r0 < r1:
        out[r0:r1, c0:c1] = mask[r0:r1, c0:c1]
    return out


def keep_component(mask: np.ndarray, box, rule: str) -> np.ndarray:
    """The largest 8-connected component of ``mask`` (``rule`` "largest"), or those holding the box centre
    (``"centre"``; the largest when none does)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    if count <= 2:  # background and at most one component
        return mask
    keep = None
    if rule == "centre":
        x0, y0, x1, y1 = (float(v) for v in box)
        r = min(max(int(round((y0 + y1) / 2)), 0), mask.shape[0] - 1)
        c = min(max(int(round((x0 + x1) / 2)), 0), mask.shape[1] - 1)
        if labels[r, c] > 0:
            keep = labels[r, c]
    if keep is None:
        keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == keep


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not touch the image border filled."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    flood = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(padded, flood, (0, 0), 1)  # background reachable from the border becomes 1
    return mask | (padded[1:-1, 1:-1] == 0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks (anything non-zero is foreground); 1.0 when both are empty. The one the export gate,
    the benchmarks and the tests compare masks with (scoring against ground truth: evaluation/compute_metrics)."""
    a, b = a != 0, b != 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total
