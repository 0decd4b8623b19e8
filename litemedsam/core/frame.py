"""Where an image sits in a model: the one object that maps boxes, points, masks and embedding cells between
the image and the model (segment-anything's ``ResizeLongestSide``, made per image).

Four sizes are involved: the image (H x W); the model's square input S x S, in which the image is resized
(longest side to S, padded bottom/right; or stretched to S x S for EfficientSAM); the low-res logits,
L x L, covering the input (L = S for LiteMedSAM, S / 4 for SAM and EfficientSAM); and the embedding cells,
G x G (S / 4 for LiteMedSAM, S / 16 for SAM). Prompts are given to the model in the input frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from litemedsam.core import transforms


@dataclass(frozen=True)
class Frame:
    original_hw: tuple  # (H, W) of the image
    resized_hw: tuple  # the image inside the S x S input (the rest is padding)
    input_size: int  # S
    logit_size: int  # L
    grid_size: int  # G
    scale_xy: tuple  # input pixels per image pixel along x and y
    truncate_boxes: bool = False  # LiteMedSAM's reference truncates scaled boxes to integers
    reference_boxes_from_masks: bool = False  # LiteMedSAM's reference way of boxing a neighbour slice's mask

    @classmethod
    def longest_side(cls, h: int, w: int, input_size: int, logit_size: int, grid_size: int, **options) -> "Frame":
        """The image resized so that its longest side is S (rounded half up), padded bottom/right."""
        scale = input_size / max(h, w)
        return cls((h, w), transforms.resized_shape(h, w, input_size), input_size, logit_size, grid_size,
                   (scale, scale), **options)

    @classmethod
    def stretched(cls, h: int, w: int, input_size: int, logit_size: int, grid_size: int, **options) -> "Frame":
        """The image resized to S x S whatever its aspect ratio (EfficientSAM)."""
        return cls((h, w), (input_size, input_size), input_size, logit_size, grid_size,
                   (input_size / w, input_size / h), **options)

    # prompts: image pixels -> input frame -------------------------------------------------------------

    def boxes_to_model(self, boxes) -> np.ndarray:
        """(N, 4) boxes x0, y0, x1, y1 in image pixels -> (N, 4) float32 in the input frame."""
        sx, sy = self.scale_xy
        out = np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])
        return (np.trunc(out) if self.truncate_boxes else out).astype(np.float32)

    def points_to_model(self, points) -> np.ndarray:
        """(..., 2) points x, y in image pixels -> the input frame (not truncated)."""
        return (np.asarray(points, np.float64) * np.array(self.scale_xy)).astype(np.float32)

    def box_from_mask(self, mask: np.ndarray, label: int, margin: int) -> np.ndarray | None:
        """The prompt box (input frame) around a neighbouring slice's (H, W) mask, widened by ``margin``
        pixels of a 256 frame; None when the mask is empty. LiteMedSAM reproduces its reference exactly (the
        mask resized as a label image, so the label value matters, and the box clamped to [0, S])."""
        if self.reference_boxes_from_masks:
            return transforms.box_from_mask(mask, label, self.input_size, margin)
        found = transforms.bounding_box(mask)
        if found is None:
            return None
        x0, y0, x1, y1 = found
        h, w = mask.shape
        m = margin * max(h, w) / 256
        box = [[max(0, x0 - m), max(0, y0 - m), min(w - 1, x1 + m), min(h - 1, y1 + m)]]
        return self.boxes_to_model(box)[0]

    # logits: low-res grid -> image ----------------------------------------------------------------------

    @property
    def logit_hw(self) -> tuple:
        """The part of the L x L low-res logits that covers the image."""
        nh, nw = self.resized_hw
        ratio = self.logit_size / self.input_size
        return max(1, round(nh * ratio)), max(1, round(nw * ratio))

    def masks(self, logits: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """(N, L, L) low-res logits -> (N, H, W) bool: crop the padding, upsample, threshold at 0."""
        return transforms.postprocess_masks(logits, self.logit_hw, self.original_hw, interpolation)

    def logit_map(self, logits: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """(L, L) low-res logits of one object -> (H, W) float32 (``masks`` is this thresholded at 0)."""
        return transforms.upsample_logits(logits, self.logit_hw, self.original_hw, interpolation)

    def box_to_image(self, box) -> np.ndarray:
        """A box x0, y0, x1, y1 in the input frame -> image pixels."""
        sx, sy = self.scale_xy
        return np.asarray(box, np.float64) / np.array([sx, sy, sx, sy])

    # embedding cells ---------------------------------------------------------------------------------

    def image_to_grid(self, image_map: np.ndarray, interpolation: int = cv2.INTER_NEAREST) -> np.ndarray:
        """(H, W) map -> (G, G) float32 on the embedding cells: resized as the image is into the input,
        padded with 0, then resized to the grid."""
        nh, nw = self.resized_hw
        s = self.input_size
        canvas = np.zeros((s, s), np.float32)
        canvas[:nh, :nw] = cv2.resize(np.asarray(image_map, np.float32), (nw, nh), interpolation=interpolation)
        return cv2.resize(canvas, (self.grid_size, self.grid_size), interpolation=interpolation)

    def grid_to_image(self, grid_map: np.ndarray, interpolation: int = cv2.INTER_NEAREST) -> np.ndarray:
        """(G, G) map on the embedding cells -> (H, W): to the input frame, crop the padding, resize."""
        nh, nw = self.resized_hw
        h, w = self.original_hw
        s = self.input_size
        canvas = cv2.resize(np.asarray(grid_map, np.float32), (s, s), interpolation=interpolation)[:nh, :nw]
        return cv2.resize(canvas, (w, h), interpolation=interpolation)

    def grid_cells(self) -> tuple:
        """Rows and columns of embedding cells that cover the image (the others cover only padding)."""
        nh, nw = self.resized_hw
        g, s = self.grid_size, self.input_size
        return math.ceil(nh * g / s), math.ceil(nw * g / s)
