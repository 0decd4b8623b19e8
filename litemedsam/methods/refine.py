"""Correcting a segmentation by clicks (the 2025 challenge's protocol, and the browser app): each click says that
the voxel under it is (foreground click) or is not (background click) object ``label``.

LiteMedSAM's decoder was trained with boxes only: given SAM's point prompts with the box it does not follow them
(measured on the 182 objects of the 2D dev cases: 5 clicks as points take the mean Dice from 73.7 to 52.4, with
the previous mask as the mask prompt to 27.3; re-decoding a box grown or shrunk to the click: 66.6). So a click
edits the mask where it is: a foreground click outside the object adds the ball around it that reaches the
object's nearest voxel; a background click inside removes the ball that reaches the object's edge (radius: the
distance from the click to that voxel, in mm where the spacing is known), both kept to the voxels of the click's
intensity (``alike``). The protocol clicks the centre of the largest error, so that ball is the error's core. In
a volume the model's errors are bands along an object's edge over many slices, which a ball does not reach: there
the edit also takes the voxels near the click that the model's logits (the object's slices prompted again with
the box of its mask, ``Logits``) score like the click, so the edge moves to the model's contour through the click
(``follow``), when the model was unsure at the click. ``python -m benchmarks.bench_clicks`` (the whole protocol,
docs/models.md): after 5 clicks, mean DSC +8.6 on the 10 dev volumes (+5.9 with balls only; every volume above
its box) and +7.7 on the 42 2D dev cases (balls only: following the model there loses, ``model_logits``).

The previous output is kept wherever no click is: every click of a class is applied in order to the previous
label map, and a click that the map already agrees with changes nothing, so a later step never undoes an earlier
fix. A class with no voxel at all (a case that starts from clicks, or an object the box step lost) is built from
its first foreground click by the model: ``seed`` (litemedsam.methods.pipeline segments it then as a box would).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from litemedsam.core.errors import CaseError
from litemedsam.core.transforms import bounding_box
from litemedsam.io import formats
from litemedsam.io.cases import label_dtype
from litemedsam.methods.pipeline import segment_3d
from litemedsam.methods.propagation import Propagation

REACH_MM = 60.0  # how far from a click the object's edge is looked for (beyond: a ball of this radius at most)
FOLLOW_REACH = 3.0  # how far a click's edit may follow the model's logits, in radii of its ball
# ... to the voxels whose logit is within this of the click's (beyond its level: the error's far side)
FOLLOW_MARGIN = 1.0
FOLLOW_LEVEL = 15.0  # ... when the click's own logit is within this of 0 (the model was unsure there)
SEED_SIZES = (0.05, 0.1, 0.2, 0.35, 0.5)  # boxes tried around a first click, as a share of the image's longer side
MAX_SEEDS = 100  # objects a case may build from clicks alone (each is propagated through a volume like a box)


def refine(labels: np.ndarray, clicks: list, image: np.ndarray, spacing=None, logits=None) -> np.ndarray:
    """``labels`` (2D or 3D label map, changed in place and returned) with every click of ``clicks`` applied in
    order: per object (label i + 1 for ``clicks[i]``), [("fg" or "bg", (z, y, x)), ...] (z is 0 in 2D).
    ``image``: the case's uint8 image (2D: H x W [x 3]; 3D: D x H x W). ``spacing``: mm between slices, rows,
    columns (None: voxels are cubes). ``logits``: the model's (``Logits``) for edits to follow; None: balls only.
    A click never changes the voxel of an earlier one."""
    volume, grey = volumes(labels, image)
    mm = millimetres(spacing)
    done: list = []
    for i, made in enumerate(clicks):
        for kind, at in made:
            click(volume, grey, i + 1, kind, at, mm, logits, done)
            done.append(tuple(int(v) for v in at))
    return labels


def volumes(labels: np.ndarray, image: np.ndarray) -> tuple:
    """(D, H, W) views of a label map and its image in grey, as clicks take them: a 2D map is one slice (z 0)."""
    if labels.ndim == 3:
        return labels, image
    return labels[None], (image.mean(axis=2) if image.ndim == 3 else image)[None]


def millimetres(spacing) -> np.ndarray:
    """The spacing (z, y, x in mm, litemedsam.io.formats.spacing) as clicks measure it; None: cubes of 1."""
    return np.ones(3) if spacing is None else np.asarray(spacing, float)


def click(volume: np.ndarray, grey: np.ndarray, label: int, kind: str, at: tuple, mm: np.ndarray, logits=None,
          kept=()) -> None:
    """One click on ``volume`` (D, H, W) of ``grey`` (the image, D x H x W): see the module's description. The
    voxels ``kept`` ((z, y, x), earlier clicks) keep their label."""
    found = change(volume, grey, label, kind, at, mm, logits)
    if found is not None:
        window, take, value = found
        keep_clicks(take, window, kept)
        volume[window][take] = value


def keep_clicks(take: np.ndarray, window: tuple, kept) -> None:
    """Leave out of a click's change ``take`` (over ``window``) the voxels of the earlier clicks ``kept``."""
    for voxel in kept:
        inside = tuple(int(v) - w.start for v, w in zip(voxel, window))
        if all(0 <= v < n for v, n in zip(inside, take.shape)):
            take[inside] = False


def change(volume: np.ndarray, grey: np.ndarray, label: int, kind: str, at: tuple, mm: np.ndarray, logits=None):
    """What one click changes: (window of ``volume``, the voxels of it that change, their new label), or None
    when the map already says what the click says. ``logits`` (``Logits``): the edit also takes the voxels near
    the click that the model scores like the click (``follow``)."""
    from scipy import ndimage  # here, not at import: a box-only run never pays its ~0.15 s import
    at = tuple(int(v) for v in at)
    if (volume[at] == label) == (kind == "fg"):
        return None
    window, centre = around(at, mm)
    local = volume[window]
    mask = local == label
    edge = mask if kind == "fg" else ~mask  # what the click's distance is measured to
    radius = REACH_MM if not edge.any() else nearest(edge, centre, mm)
    grid = np.ogrid[tuple(slice(0, n) for n in local.shape)]
    away = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, mm))  # squared mm from the click
    ball = (away <= radius ** 2) & alike(grey[window], centre)
    if logits is not None and edge.any():
        ball |= follow(logits, window, label, at, kind == "fg", mask, away <= (FOLLOW_REACH * radius) ** 2)
    parts, _ = ndimage.label(ball, np.ones((3, 3, 3), bool))
    ball = parts == parts[centre] if parts[centre] else np.zeros_like(ball)
    ball[centre] = True
    if kind == "fg":  # background, or the object the click is on (wrongly there), becomes this object
        return window, ball & ((local == 0) | (local == local[centre])), label
    return window, ball & mask, 0


def edit(seg, image: np.ndarray, labels: np.ndarray, label: int, kind: str, at: tuple, spacing=None, kept=()):
    """What one click on ``labels`` (a 2D or 3D label map, not changed) does, as ``refine`` applies it to a case
    whose earlier clicks were ``kept`` ((z, y, x) each; their voxels keep their label): (flat indices of
    ``labels``, the label they take), None when the map already says what the click says. ``seg``: the model
    whose logits a volume's click follows (``model_logits``); ``at``: (z, y, x), z 0 in 2D."""
    volume, grey = volumes(labels, image)
    found = change(volume, grey, int(label), kind, at, millimetres(spacing), model_logits(seg, image, labels))
    if found is None:
        return None
    window, take, value = found
    keep_clicks(take, window, kept)
    where = np.nonzero(take)
    changed = np.ravel_multi_index([w + s.start for w, s in zip(where, window)], volume.shape)
    return changed, value  # a 2D map's flat indices are its (1, H, W)'s: the same


def around(at: tuple, mm: np.ndarray) -> tuple:
    """(the window of ``REACH_MM`` around voxel ``at`` that a click looks at, ``at`` within it)."""
    reach = np.maximum(1, np.ceil(REACH_MM / mm)).astype(int)
    window = tuple(slice(max(0, int(a) - r), int(a) + r + 1) for a, r in zip(at, reach))
    return window, tuple(int(a) - w.start for a, w in zip(at, window))


def gap(labels: np.ndarray, label: int, at: tuple, spacing=None) -> float:
    """How far voxel ``at`` (z, y, x; z 0 in 2D) is from object ``label`` of ``labels``, in mm (pixels without a
    spacing); 0 on it, infinity when it is not within ``REACH_MM``."""
    volume = labels if labels.ndim == 3 else labels[None]
    mm = millimetres(spacing)
    window, centre = around(at, mm)
    edge = volume[window] == label
    if edge[centre]:
        return 0.0
    return nearest(edge, centre, mm) if edge.any() else float("inf")


def nearest(edge: np.ndarray, centre: tuple, mm: np.ndarray) -> float:
    """The distance in mm from voxel ``centre`` to the nearest voxel of ``edge`` (not empty): the value SciPy's
    ``distance_transform_edt(~edge, sampling=mm)`` has at ``centre``, by its own arithmetic (offsets as float64
    times the spacing, squared, summed z, y, x, the square root), for that one voxel instead of the whole window
    (0.84 of a 0.97 s click on a 16 x 512 x 512 CT). Only ``edge``'s surface is looked at (its voxels with a
    6-neighbour outside it): the nearest voxel is always there, since a step from it towards ``centre`` (not in
    ``edge``) would otherwise be a nearer one."""
    inner = edge.copy()
    for axis, n in enumerate(edge.shape):
        if n > 1:
            low, high = [slice(None)] * edge.ndim, [slice(None)] * edge.ndim
            low[axis], high[axis] = slice(0, n - 1), slice(1, n)
            inner[tuple(low)] &= edge[tuple(high)]
            inner[tuple(high)] &= edge[tuple(low)]
    found = np.nonzero(edge & ~inner)
    total = np.zeros(len(found[0]))
    for axis, (where, c) in enumerate(zip(found, centre)):
        d = (where - c).astype(np.float64)
        d *= mm[axis]
        d *= d
        total += d
    return float(np.sqrt(total.min()))


def follow(logits, window: tuple, label: int, at: tuple, grow: bool, mask: np.ndarray, near: np.ndarray) -> np.ndarray:
    """The voxels of ``window`` (``near`` the click) that the model scores for object ``label`` like the click or
    more (``grow``: a foreground click outside ``mask``, the object there) or like it or less (a background click
    inside it), by the click's level plus ``FOLLOW_MARGIN``: the new edge is the model's contour through the
    click, moved on by the margin (the protocol clicks the middle of an error, whose far side is beyond it). The
    model's errors run along an object's edge over many slices; this takes the band along it, the ball only its
    middle. On slices without the object, or when the click's slice has none: nothing."""
    here = logits(at[0], label)
    if here is None:
        return np.zeros(mask.shape, bool)
    level = float(here[at[1], at[2]])
    if abs(level) > FOLLOW_LEVEL:
        return np.zeros(mask.shape, bool)
    field = np.full(mask.shape, -np.inf if grow else np.inf, np.float32)
    for k, z in enumerate(range(window[0].start, window[0].start + mask.shape[0])):
        if near[k].any():
            found = here if z == at[0] else logits(z, label)
            if found is not None:
                field[k] = found[window[1], window[2]]
    if grow:
        return near & ~mask & (field >= level - FOLLOW_MARGIN)
    return near & mask & (field <= level + FOLLOW_MARGIN)


def model_logits(seg, image: np.ndarray, labels: np.ndarray):
    """What clicks on ``labels`` follow (``Logits``) for a volume; None for a 2D image, whose clicks take their
    ball only: there the ball already is the error's core and following the model loses (bench_clicks on the 42
    2D dev cases: final DSC 75.36 with vs 75.94 without, one case 10 points below its box)."""
    return Logits(seg, image, labels) if labels.ndim == 3 else None


class Logits:
    """The model's logits for an object on a slice, prompted as propagation prompts a slice (the box of the
    object's mask there, litemedsam.methods.pipeline.segment_3d), from the volume's label map as it is when made
    (the previous output): what ``follow`` reads. A slice is encoded only when a click reaches it; the last
    ``KEEP`` slices' embeddings are kept (4 MB each for LiteMedSAM) for the other objects clicked there."""

    KEEP = 32

    def __init__(self, seg, volume: np.ndarray, labels: np.ndarray):
        self.seg, self.volume, self.labels = seg, volume, labels.copy()
        self.embeddings: OrderedDict = OrderedDict()

    def __call__(self, z: int, label: int):
        """(H, W) float32 logits of object ``label`` on slice ``z``; None where the map has no such object."""
        mask = self.labels[z] == label
        if not mask.any():
            return None
        if z not in self.embeddings:
            self.embeddings[z] = self.seg.encode(self.volume[z])
            if len(self.embeddings) > self.KEEP:
                self.embeddings.popitem(last=False)
        emb = self.embeddings[z]
        box = emb.frame.box_from_mask(mask, label, 3)
        return None if box is None else next(iter(self.seg.logit_maps(emb, box[None])))


def alike(grey: np.ndarray, centre: tuple) -> np.ndarray:
    """The voxels of ``grey`` whose intensity is that of the click's neighbourhood: within max(6, 5 standard
    deviations) of the median of the 5 x 5 pixels around it on its slice (without it, the ball of a click
    spills over an organ's edge: one 2D dev case lost 15 Dice points to a click; with it none loses more than 0.1
    over 182 objects; 5 deviations rather than 3: on the dev cases 2D +7.7 vs +6.5, 3D +5.9 vs +5.7)."""
    z, y, x = centre
    patch = grey[z, max(0, y - 2):y + 3, max(0, x - 2):x + 3].astype(np.float32)
    return np.abs(grey.astype(np.float32) - np.median(patch)) <= max(6.0, 5.0 * float(patch.std()))


def segment_with_clicks(seg, case, segment_boxes) -> np.ndarray:
    """The label map of a case with clicks (``case.clicks``): its previous output (``case.prev``; without one, its
    boxes segmented by ``segment_boxes(case)``), each object that has no voxel yet seeded from its first
    foreground click, then every click applied (``refine``)."""
    count = max(len(case.clicks), len(case.boxes))
    shape = case.label_shape
    if case.prev is not None:
        labels = case.prev
    elif len(case.boxes):
        labels = segment_boxes(case)
    else:
        labels = np.zeros(shape, np.uint8)
    labels = labels.astype(label_dtype(max(count, int(labels.max(initial=0)))))  # a copy: prev is the file's
    present = np.bincount(labels.ravel(), minlength=count + 1) > 0
    firsts = {i + 1: next(at for kind, at in made if kind == "fg") for i, made in enumerate(case.clicks)
              if not present[i + 1] and any(kind == "fg" for kind, _ in made)}
    if len(firsts) > MAX_SEEDS:
        raise CaseError(f"{len(firsts)} objects have clicks but no voxel and no box; a case builds at most {MAX_SEEDS} "
                        f"objects from clicks alone (give the others a box)")
    if firsts:
        built = seed(seg, case, firsts)
        labels[(labels == 0) & (built > 0)] = built[(labels == 0) & (built > 0)]
    return refine(labels, case.clicks, case.image, formats.spacing(case), model_logits(seg, case.image, labels))


def seed(seg, case, firsts: dict, z_range=None) -> np.ndarray:
    """Objects built from one foreground click each (``firsts``: label -> (z, y, x)): on the click's slice (2D:
    the image), boxes of ``SEED_SIZES`` centred on it go through the decoder at once and the one whose mask holds
    the click with the highest predicted IoU wins; in 3D those boxes are then propagated from their clicks'
    slices together, as a case's boxes are (each slice encoded once for all), each way until its object ends or
    (``z_range``: first, last) that range does. A label map of the case's shape (0 where no object is; an object
    whose masks all miss its click is left out)."""
    shape = case.label_shape
    out = np.zeros(shape, label_dtype(max(firsts, default=0)))
    found = []  # (label, its box on its click's slice, that slice)
    encoded = {}
    for label, at in firsts.items():
        z, y, x = (int(v) for v in at)
        image = case.image if case.dim == "2D" else case.image[z]
        h, w = image.shape[:2]
        if z not in encoded:
            encoded[z] = seg.encode(image)
        emb = encoded[z]
        half = [max(2.0, f * max(h, w) / 2) for f in SEED_SIZES]
        boxes = np.array([[max(0, x - r), max(0, y - r), min(w - 1, x + r), min(h - 1, y + r)] for r in half])
        low, scores = seg.decode(emb, emb.frame.boxes_to_model(boxes))
        masks = emb.frame.masks(low)
        held = [i for i in range(len(boxes)) if masks[i][y, x]]
        if not held:
            continue
        best = max(held, key=lambda i: scores[i])
        if case.dim == "2D":
            out[masks[best] & (out == 0)] = label
        else:
            box = bounding_box(masks[best])
            assert box is not None  # the mask holds the click
            found.append((label, box, z))
    if found:
        first, last = (0, shape[0] - 1) if z_range is None else (max(0, min(z_range)), min(shape[0] - 1, max(z_range)))
        volume_boxes = np.array([[x0, y0, min(first, z), x1, y1, max(last, z)] for _, (x0, y0, x1, y1), z in found])
        made = segment_3d(seg, case.image, volume_boxes, how=Propagation(stop=1), starts=[z for _, _, z in found])
        lookup = np.array([0] + [label for label, _, _ in found], out.dtype)
        out[...] = lookup[made]
    return out
