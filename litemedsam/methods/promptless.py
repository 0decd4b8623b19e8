"""Prompt-free models (``infer --prompt none``): SAMed's semantic label maps and ProMISe's auto-prompted masks."""
from __future__ import annotations

import numpy as np

from litemedsam.methods.prompting import SlicePrompting


class Promptless(SlicePrompting):
    """infer --prompt none: the model segments each 2D image or 3D slice with no prompt (boxes ignored)."""

    name = "prompt-free segmentation (--prompt none)"
    dims = ("2D", "3D")

    def __init__(self, model: str):
        self.model = model

    def segment_image(self, seg, image: np.ndarray) -> np.ndarray:
        return seg.segment(image)
