"""Segmenting one case: 2D images in one encoder call, 3D volumes by propagation from the middle slice."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from litemedsam.cases import Case, label_dtype
from litemedsam.segmenter import BoxSegmenter as Segmenter

MAX_CACHED_SLICES = 256  # 1 GiB of LiteMedSAM embeddings; past it a slice may be encoded twice


def paint(region: np.ndarray, mask: np.ndarray, label: int) -> None:
    """Write ``label`` where ``mask`` is set, unless a higher label is there: the highest box wins,
    as when boxes are painted in order (the reference's behaviour), whatever order we paint in."""
    region[mask & (region < label)] = label


def segment_2d(seg: Segmenter, image: np.ndarray, boxes: np.ndarray, skipped=(), prompt: str = "box") -> np.ndarray:
    """(H, W[, 3]) image, (N, 4) boxes -> (H, W) labels 1..N; one encoder call for all boxes."""
    out = np.zeros(image.shape[:2], dtype=label_dtype(len(boxes)))
    labels = [i + 1 for i in range(len(boxes)) if i + 1 not in skipped]
    if not labels:
        return out
    emb = seg.encode(image)
    model_boxes = emb.frame.boxes_to_model(boxes[np.array(labels) - 1])
    for start in range(0, len(labels), seg.max_batch):
        chunk = slice(start, start + seg.max_batch)
        for label, mask in zip(labels[chunk], seg.predict(emb, model_boxes[chunk], prompt)):
            paint(out, mask, label)
    return out


@dataclass
class Track:
    """One 3D box followed through its slices."""

    label: int
    box: np.ndarray  # the given box in the model's input frame: prompt on the middle slice and fallback
    z_mid: int
    up: range  # middle slice upwards
    down: range  # below the middle slice, downwards
    prev: np.ndarray | None = None  # this object's mask on the previously segmented slice
    mid: np.ndarray | None = None  # its mask on the middle slice (where the downward pass starts)


def segment_3d(seg: Segmenter, volume: np.ndarray, boxes: np.ndarray, skipped=(), margin: int = 3,
               prompt: str = "box") -> np.ndarray:
    """(D, H, W) volume, (N, 6) boxes -> (D, H, W) labels 1..N.

    As the reference: from the middle slice of each box up to z_max, then from below the middle
    down to z_min (both inclusive); the middle slice is prompted with the given box, every other
    slice with the box of the object's mask on the neighbouring slice widened by ``margin`` pixels,
    falling back to the given box when that mask is empty. Unlike the reference, all boxes advance
    together, so each slice is encoded at most once and all boxes on a slice go through the decoder
    in one call; a box spanning a single slice segments that slice (the reference aborts).
    """
    d, h, w = volume.shape
    frame = seg.frame(h, w)
    out = np.zeros(volume.shape, dtype=label_dtype(len(boxes)))
    tracks = []
    for i, (x0, y0, z0, x1, y1, z1) in enumerate(boxes.tolist()):
        if i + 1 in skipped:
            continue
        z_mid = z0 + (z1 - z0) // 2
        box = frame.boxes_to_model([[x0, y0, x1, y1]])[0]
        tracks.append(Track(i + 1, box, z_mid, range(z_mid, z1 + 1), range(z_mid - 1, z0 - 1, -1)))

    uses = Counter(z for t in tracks for z in (*t.up, *t.down))  # decoder steps still needing slice z
    cache: dict = {}

    def run_slice(z: int, active: list) -> None:
        emb = cache.pop(z, None) or seg.encode(volume[z])
        prompts = []
        for t in active:
            box = None if z == t.z_mid else frame.box_from_mask(t.prev, t.label, margin)
            prompts.append(t.box if box is None else box)
        masks = seg.predict(emb, np.stack(prompts), prompt)
        for t, mask in zip(active, masks):
            t.prev = mask
            if z == t.z_mid:
                t.mid = mask
            paint(out[z], mask, t.label)
        uses[z] -= len(active)
        if uses[z] > 0 and len(cache) < MAX_CACHED_SLICES:  # the other pass needs this slice too
            cache[z] = emb

    for z in sorted({z for t in tracks for z in t.up}):
        run_slice(z, [t for t in tracks if z in t.up])
    for t in tracks:
        t.prev = t.mid
    for z in sorted({z for t in tracks for z in t.down}, reverse=True):
        run_slice(z, [t for t in tracks if z in t.down])
    return out


# The three orientations of multi-view segmentation: how to turn a (D, H, W) volume so that its slices
# are the view's planes, and how its boxes' columns (x0, y0, z0, x1, y1, z1) move with it.
VIEWS = {
    "axial": ((0, 1, 2), [0, 1, 2, 3, 4, 5]),     # slices along z: (H, W) images, box (x, y, z)
    "coronal": ((1, 0, 2), [0, 2, 1, 3, 5, 4]),   # slices along y: (D, W) images, box (x, z, y)
    "sagittal": ((2, 0, 1), [1, 2, 0, 4, 5, 3]),  # slices along x: (D, H) images, box (y, z, x)
}


def majority_vote(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Per voxel, the label at least two of the three maps agree on; background where all differ."""
    out = np.where((a == b) | (a == c), a, 0).astype(a.dtype)
    np.copyto(out, b, where=(b == c) & (a != b))
    return out


def segment_multiview(seg: Segmenter, volume: np.ndarray, boxes: np.ndarray, skipped=(), margin: int = 3,
                      prompt: str = "box") -> np.ndarray:
    """Propagate every box through axial, coronal and sagittal slices and fuse by majority vote."""
    views = []
    for axes, columns in VIEWS.values():
        turned = segment_3d(seg, np.ascontiguousarray(volume.transpose(axes)), boxes[:, columns], skipped, margin, prompt)
        views.append(turned.transpose(np.argsort(axes)))
    return majority_vote(*views)


def segment_case(seg: Segmenter, case: Case, strategy: str = "propagate", margin: int = 3,
                 prompt: str = "box") -> np.ndarray:
    """One case with the strategy and prompt style the router chose (2D cases take one encoder call)."""
    if case.dim == "2D":
        return segment_2d(seg, case.image, case.boxes, case.skipped, prompt)
    if strategy == "multiview":
        return segment_multiview(seg, case.image, case.boxes, case.skipped, margin, prompt)
    return segment_3d(seg, case.image, case.boxes, case.skipped, margin, prompt)
