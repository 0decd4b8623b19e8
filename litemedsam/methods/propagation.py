"""How a case's boxes become its label map, as one frozen value (MONAI's ``SliceInferer`` is the model): a router
rule owns one, a decision carries it, ``litemedsam.methods.pipeline.segment_case`` runs it. No model or OpenCV here,
so the router reads its file without them."""
from __future__ import annotations

from dataclasses import dataclass

from litemedsam.core.masks import EXACT, MaskPolicy


@dataclass(frozen=True)
class Propagation:
    """A 2D image: one encoder call for all its boxes. A volume (``strategy`` "propagate"): each 3D box from its
    start slice (the middle, or the 2025 layout's z_mid) up to z_max, then from below it down to z_min, every
    slice but the start prompted with the box of the object's mask on the slice before, widened by ``margin``
    pixels (the given box where that mask is empty); "multiview": that through the axial, coronal and sagittal
    slices, fused by majority vote. ``prompt``: how a box is given to the decoder (the family's prompt styles).
    Faster options (off by default): ``stride`` K > 1 segments every K-th slice of each pass (and its last) and
    fills those between by shape interpolation; ``stop`` N > 0 ends a box's pass after N consecutive slices with
    an empty mask or, with ``shrink`` > 0, one smaller than that share of its largest so far (where nothing says
    where an object ends: a RECIST line, litemedsam.serve.scene.Scene.propagate; no router rule sets it).
    ``policy`` (litemedsam.core.masks) acts on each mask before it is painted and prompts the next slice."""

    strategy: str = "propagate"
    margin: int = 3
    prompt: str = "box"
    stride: int = 1
    stop: int = 0
    shrink: float = 0.0
    policy: MaskPolicy = EXACT

    def describe(self) -> str:
        """``propagate (margin 3, every 2 slices, stop after 2 empty)``: how a volume is followed."""
        return (f"{self.strategy} (margin {self.margin}" + (f", every {self.stride} slices" if self.stride > 1 else "")
                + (f", stop after {self.stop} empty" if self.stop else "") + ")")
