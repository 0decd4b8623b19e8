"""Image, box and mask transforms of the reference LiteMedSAM inference script (and the pixel statistics
of segment-anything), in NumPy/OpenCV. Per-image geometry lives in litemedsam.core.frame."""
from __future__ import annotations

import cv2
import numpy as np


SAM_PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # segment-anything's normalisation
SAM_PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)


def rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) -> (H, W, 3)."""
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def resized_shape(h: int, w: int, target: int) -> tuple[int, int]:
    """Shape after scaling the longest side to ``target`` (rounded half up, as the reference)."""
    scale = target / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


def resize_longest_side(image: np.ndarray, target: int) -> np.ndarray:
    """Resize (H, W) or (H, W, C) so the longest side is ``target``, with area interpolation."""
    nh, nw = resized_shape(image.shape[0], image.shape[1], target)
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)


def preprocess(image: np.ndarray, target: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) -> float32 (1, 3, target, target): resize, min-max, zero-pad."""
    small = resize_longest_side(image, target).astype(np.float32)
    lo, hi = float(small.min()), float(small.max())
    small = (small - lo) / max(hi - lo, 1e-8)
    out = np.zeros((1, 3, target, target), dtype=np.float32)
    h, w = small.shape[:2]
    if small.ndim == 2:
        out[0, :, :h, :w] = small
    else:
        out[0, :, :h, :w] = small.transpose(2, 0, 1)
    return out


def scale_boxes(boxes: np.ndarray, h: int, w: int, target: int) -> np.ndarray:
    """(N, 4) boxes in original pixels -> the resized frame, truncated to integers like the reference."""
    return np.trunc(np.asarray(boxes, dtype=np.float64) * (target / max(h, w))).astype(np.float32)


def bounding_box(mask: np.ndarray) -> tuple | None:
    """(x0, y0, x1, y1), inclusive, of a 2D mask's set pixels (OpenCV's boundingRect), None when it is empty."""
    mask = np.ascontiguousarray(mask)
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8, copy=False))
    return None if w == 0 else (x, y, x + w - 1, y + h - 1)


def box_from_mask(mask: np.ndarray, label: int, target: int, margin: int = 3) -> np.ndarray | None:
    """Prompt box (resized frame) around a previous slice's mask, widened by ``margin`` pixels.

    As the reference, the mask is resized as a label image holding ``label`` (area interpolation,
    so which boundary pixels survive depends on the label value) and the box is clamped to
    [0, target]. None when nothing survives the resize.
    """
    small = resize_longest_side(mask.astype(np.uint8) * np.uint8(min(label, 255)), target)
    box = bounding_box(small)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return np.array(
        [
            max(0, x0 - margin),
            max(0, y0 - margin),
            min(target, x1 + margin),
            min(target, y1 + margin),
        ],
        dtype=np.float32,
    )


def upsample_logits(lowres: np.ndarray, resized_hw: tuple[int, int], original_hw: tuple[int, int],
                    interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """(S, S) low-res logits -> (H, W) float32: crop the padding, upsample (bilinear)."""
    nh, nw = resized_hw
    h, w = original_hw
    return cv2.resize(np.ascontiguousarray(lowres[:nh, :nw]), (w, h), interpolation=interpolation)


def postprocess_masks(logits: np.ndarray, resized_hw: tuple[int, int], original_hw: tuple[int, int],
                      interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """(N, S, S) low-res logits -> (N, H, W) bool: crop the padding, upsample (bilinear), threshold."""
    h, w = original_hw
    out = np.empty((logits.shape[0], h, w), dtype=bool)
    for i, lowres in enumerate(logits):
        np.greater(upsample_logits(lowres, resized_hw, original_hw, interpolation), 0.0, out=out[i])
    return out
