"""Overlays a person checks at a glance (``infer --overlay DIR``): the image with each label's contour in its own
colour and each object's box. 2D: one PNG. 3D: a montage with one panel per object (up to 16, largest first):
the slice in the middle of its box's z-range, every label's contour on it, its box. Written as
DIR/<case file name>.png, atomically."""
from __future__ import annotations

import colorsys
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from litemedsam.core.safeio import write_bytes

MAX_PANELS = 16
PANEL = 384  # longest side of a 3D panel, pixels


PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180)]


@lru_cache(maxsize=65536)
def colour(label: int) -> tuple:
    """The palette's distinct colours for the first labels, then hues a golden angle apart (never repeating)."""
    if label <= len(PALETTE):
        return PALETTE[label - 1]
    h, s, v = (label * 0.6180339887) % 1.0, 0.65 + 0.3 * ((label * 7) % 3) / 2, 0.95
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, min(s, 0.95), v))


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3])


def draw(image: np.ndarray, labels: np.ndarray, boxes: list, scale: float = 1.0) -> np.ndarray:
    """``image`` (H, W[, 3]) with the contour of every label of ``labels`` and the given (label, x0, y0, x1, y1)
    boxes drawn, resized by ``scale`` first (contours stay one line wide at any size)."""
    canvas = _rgb(image)
    if scale != 1.0:
        size = (max(1, round(canvas.shape[1] * scale)), max(1, round(canvas.shape[0] * scale)))
        canvas = cv2.resize(canvas, size, interpolation=cv2.INTER_LINEAR)
        labels = cv2.resize(labels.astype(np.uint16), size, interpolation=cv2.INTER_NEAREST)
    thick = max(1, round(max(canvas.shape[:2]) / 500))
    for label in np.unique(labels):
        if label == 0:
            continue
        contours, _ = cv2.findContours((labels == label).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, colour(int(label)), thick)
    for label, x0, y0, x1, y1 in boxes:
        p0 = (round(x0 * scale), round(y0 * scale))
        p1 = (round((x1 + 1) * scale) - 1, round((y1 + 1) * scale) - 1)
        cv2.rectangle(canvas, p0, p1, colour(int(label)), max(1, thick // 2))
    return canvas


def render(case, segs: np.ndarray) -> np.ndarray:
    """The overlay image (RGB) of a case and its label map."""
    live = [(i + 1, b) for i, b in enumerate(case.boxes.tolist()) if i + 1 not in case.skipped]
    if case.dim == "2D":
        return draw(case.image, segs, [(k, b[0], b[1], b[2], b[3]) for k, b in live])
    objects = sorted(live, key=lambda kb: -(kb[1][3] - kb[1][0] + 1) * (kb[1][4] - kb[1][1] + 1))[:MAX_PANELS]
    d, h, w = case.image.shape
    scale = PANEL / max(h, w)
    panels = []
    for label, (x0, y0, z0, x1, y1, z1) in sorted(objects):
        z = int(z0 + (z1 - z0) // 2)
        panel = draw(case.image[z], segs[z], [(label, x0, y0, x1, y1)], scale)
        cv2.putText(panel, f"{label} z{z}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour(label), 1, cv2.LINE_AA)
        panels.append(panel)
    if not panels:
        return draw(case.image[d // 2], segs[d // 2], [], scale)
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    ph, pw = panels[0].shape[:2]
    sheet = np.zeros((rows * ph, cols * pw, 3), np.uint8)
    for n, panel in enumerate(panels):
        r, c = divmod(n, cols)
        sheet[r * ph:(r + 1) * ph, c * pw:(c + 1) * pw] = panel
    return sheet


def write(case, segs: np.ndarray, folder: Path) -> Path:
    target = folder / f"{case.path.name}.png"
    ok, data = cv2.imencode(".png", cv2.cvtColor(render(case, segs), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    write_bytes(target, data.tobytes())
    return target
