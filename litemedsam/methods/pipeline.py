"""Segmenting one case: 2D images in one encoder call, 3D volumes by propagation from the middle slice."""
from __future__ import annotations

import queue
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from litemedsam.core import confidence, progress
from litemedsam.io.cases import Case, label_dtype
from litemedsam.core.masks import MaskPolicy
from litemedsam.core.timing import phase
from litemedsam.core.transforms import bounding_box
from litemedsam.methods.propagation import Propagation
from litemedsam.models.segmenter import BoxSegmenter

MAX_CACHED_SLICES = 256  # 1 GiB of LiteMedSAM embeddings; past it a slice may be encoded twice
# a volume's slices are encoded ahead by several sessions (litemedsam.models.parallel) only when its passes visit
# this many: below, the sessions' making (~1.2 s for two) and the slices encoded past where a pass stops cost more
# than the split gains. Measured on 2 cores (each case in a fresh process, 1 vs 2 sessions x 1 thread): BraTS
# volumes visiting 47-82 slices 32.8-57.2 s against 39.0-78.1 s; a 30-slice CT with 41 objects and 7-slice CT
# lesions even; the three RECIST cases (13-16 slices, ends found by the stop rule) 7.2-11.0 s against 6.5-7.8 s.
AHEAD_MIN_SLICES = 40


def paint(region: np.ndarray, mask: np.ndarray, label: int) -> None:
    """Write ``label`` where ``mask`` is set, unless a higher label is there: the highest box wins,
    as when boxes are painted in order (the reference's behaviour), whatever order we paint in. Works on the
    rows and columns the mask covers (no full-size temporaries for a small object in a large image)."""
    box = bounding_box(mask)
    if box is None:
        return
    window = (slice(box[1], box[3] + 1), slice(box[0], box[2] + 1))
    part = region[window]
    lower = part < label
    lower &= mask[window]
    part[lower] = label


class Canvas:
    """The label map being painted. Where objects overlap, ``overlap`` (litemedsam.core.masks) decides who wins:
    ``"label"``, the higher label (the reference); ``"logit"``, the object whose mask logit is higher there (a
    mask without logits, such as one interpolated between slices, counts as logit 0: it wins only where no
    decoded mask is); ``"smaller"``, the object whose mask on this image or slice is smaller (nested structures:
    the inner one wins), the higher label on a tie."""

    def __init__(self, shape: tuple, count: int, overlap: str = "label"):
        self.labels = np.zeros(shape, dtype=label_dtype(count))
        self.overlap = overlap
        self.count = count
        self.best: dict = {}  # "logit": slice (None in 2D) -> (H, W) float32, the logit of the label painted there
        self.areas: dict = {}  # "smaller": slice -> (count + 1,) the mask area of each label painted there

    def erase(self, z: int | None, label: int) -> None:
        """Remove ``label`` (to paint it again); the pixels it had won become background."""
        region = self.labels if z is None else self.labels[z]
        gone = region == label
        region[gone] = 0
        if z in self.best:
            self.best[z][gone] = -np.inf

    def paint(self, z: int | None, mask: np.ndarray, label: int, logit: np.ndarray | None = None) -> None:
        region = self.labels if z is None else self.labels[z]
        if self.overlap == "label":
            paint(region, mask, label)
            return
        if self.overlap == "smaller":  # the owner's area is looked up by label: no per-pixel map is kept
            areas = self.areas.get(z)
            if areas is None:
                areas = self.areas[z] = np.full(self.count + 1, np.inf)
            areas[label] = area = float(np.count_nonzero(mask))
            owner = areas[region]  # background: infinite, any mask wins there
            region[mask & ((owner > area) | ((owner == area) & (region < label)))] = label
            return
        best = self.best.get(z)
        if best is None:
            best = self.best[z] = np.full(region.shape, -np.inf, np.float32)
        if logit is None:
            win = mask & (best < 0)
            best[win] = 0.0
        else:
            win = mask & (logit > best)
            best[win] = logit[win]
        region[win] = label


def decode(seg: BoxSegmenter, emb, boxes: np.ndarray, prompt: str, policy: MaskPolicy):
    """(mask, logit map or None, predicted IoU or None) per box of ``boxes`` (input frame), the mask strategies
    applied; one object at a time, so that a large image holds one full-size logit map, never one per box."""
    frame = emb.frame
    scale = max(frame.original_hw) / 256
    maps = iter(seg.scored_logit_maps(emb, boxes, prompt))
    for box in boxes:
        up, score = next(maps)
        mask = up > 0
        if not policy.needs_logits:
            up = None  # freed before the next map is made
        if not policy.exact:
            mask = policy.apply(mask, frame.box_to_image(box), scale)
        yield mask, up, score
        mask = up = None  # (zip or a loop variable would keep the last map alive while the next one is made)


def segment_case(seg: BoxSegmenter, case: Case, how: Propagation = Propagation()) -> np.ndarray:
    """The label map of ``case`` (labels 1..N for its N boxes; skipped ones stay empty), its boxes followed as
    ``how`` says (litemedsam.methods.propagation)."""
    if case.dim == "2D":
        return segment_2d(seg, case.image, case.boxes, case.skipped, how)
    if how.strategy == "multiview":
        return segment_multiview(seg, case.image, case.boxes, case.skipped, how)
    return segment_3d(seg, case.image, case.boxes, case.skipped, how, case.starts)


def segment_2d(seg: BoxSegmenter, image: np.ndarray, boxes: np.ndarray, skipped=(),
               how: Propagation = Propagation()) -> np.ndarray:
    """(H, W[, 3]) image, (N, 4) boxes -> (H, W) labels 1..N; one encoder call for all boxes."""
    policy = how.policy
    canvas = Canvas(image.shape[:2], len(boxes), policy.overlap)
    labels = [i + 1 for i in range(len(boxes)) if i + 1 not in skipped]
    if not labels:
        return canvas.labels
    emb = seg.encode(image)
    model_boxes = emb.frame.boxes_to_model(boxes[np.array(labels) - 1])
    for start in range(0, len(labels), seg.max_batch):
        chunk = slice(start, start + seg.max_batch)
        for label, (mask, logit, score) in zip(labels[chunk], decode(seg, emb, model_boxes[chunk], how.prompt, policy)):
            canvas.paint(None, mask, label, logit)
            confidence.note(label, score)
    return canvas.labels


@dataclass
class Track:
    """One 3D box followed through its slices."""

    label: int
    box: np.ndarray  # the given box in the model's input frame: prompt on the middle slice and fallback
    z_mid: int
    up: list  # slices segmented from the middle slice upwards
    down: list  # below the middle slice, downwards
    prev_box: np.ndarray | None = None  # the prompt its mask on the previously segmented slice gives (None: empty)
    prev_z: int | None = None
    mid_box: np.ndarray | None = None  # likewise on the middle slice (where the downward pass starts)
    prev: np.ndarray | None = None  # its mask on the previously segmented slice, kept only to interpolate (stride)
    mid: np.ndarray | None = None
    empty: int = 0  # consecutive empty (or, with ``shrink``, shrunken) masks in the current pass
    largest: int = 0  # the area of its largest mask so far (``shrink``)
    stopped: bool = False
    areas: dict = field(default_factory=dict)  # slice -> mask area (only for the 3D re-check strategies)
    boxes: dict = field(default_factory=dict)  # slice -> box around the mask, input frame (likewise)


def _visited(start: int, end: int, stride: int) -> list:
    """start, start +- stride, ... up to end inclusive (end always visited)."""
    step = stride if end >= start else -stride
    zs = list(range(start, end + (1 if step > 0 else -1), step))
    if zs and zs[-1] != end:
        zs.append(end)
    return zs


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Positive inside, negative outside (pixels); an empty mask is far outside everywhere."""
    if not mask.any():
        return np.full(mask.shape, -float(sum(mask.shape)), np.float32)
    m = mask.astype(np.uint8)
    return cv2.distanceTransform(m, cv2.DIST_L2, 3) - cv2.distanceTransform(1 - m, cv2.DIST_L2, 3)


def interpolate_masks(a: np.ndarray, b: np.ndarray, steps: int) -> list:
    """The ``steps`` masks between a and b (exclusive), by linear interpolation of their signed distances."""
    da, db = signed_distance(a), signed_distance(b)
    return [((1 - t) * da + t * db) > 0 for t in (np.arange(1, steps + 1) / (steps + 1))]


def segment_3d(seg: BoxSegmenter, volume: np.ndarray, boxes: np.ndarray, skipped=(), how: Propagation = Propagation(),
               starts: list | None = None) -> np.ndarray:
    """(D, H, W) volume, (N, 6) boxes -> (D, H, W) labels 1..N, propagated as ``how`` says (Propagation).

    As the reference, but all boxes advance together, so each slice is encoded at most once and all boxes on
    a slice go through the decoder in one call; a box spanning a single slice segments that slice (the
    reference aborts). ``starts`` (the 2025 layout's z_mid per box) replaces the middle slice as where each box
    starts."""
    return _Volume(seg, volume, boxes, skipped, how, starts).segment()


class _Volume:
    """One volume's propagation: its tracks, how many decoder steps still need each slice, and the embeddings
    kept for the other pass."""

    def __init__(self, seg: BoxSegmenter, volume: np.ndarray, boxes: np.ndarray, skipped, how: Propagation, starts):
        d, h, w = volume.shape
        self.seg, self.volume, self.how = seg, volume, how
        self.frame = seg.frame(h, w)
        self.canvas = Canvas(volume.shape, len(boxes), how.policy.overlap)
        self.tracks = []
        for i, (x0, y0, z0, x1, y1, z1) in enumerate(boxes.tolist()):
            if i + 1 in skipped:
                continue
            z_mid = z0 + (z1 - z0) // 2 if starts is None else starts[i]
            box = self.frame.boxes_to_model([[x0, y0, x1, y1]])[0]
            down = _visited(z_mid - how.stride, z0, how.stride) if z_mid > z0 else []
            self.tracks.append(Track(i + 1, box, z_mid, _visited(z_mid, z1, how.stride), down))
        self.uses = Counter(z for t in self.tracks for z in (*t.up, *t.down))  # decoder steps still needing z
        self.cache: dict = {}
        self.ahead: Ahead | None = None

    def segment(self) -> np.ndarray:
        passes = ((lambda t: t.up, False), (lambda t: t.down, True))
        total = sum(len({z for t in self.tracks for z in slices_of(t)}) for slices_of, _ in passes)
        sessions = self.seg.slice_encoders() if total >= AHEAD_MIN_SLICES else []
        if len(sessions) > 1:  # slices encoded ahead, in the order the passes need them, several at once
            order = [z for slices_of, downward in passes
                     for z in sorted({z for t in self.tracks for z in slices_of(t)}, reverse=downward)]
            self.ahead = Ahead(self.seg, self.volume, list(dict.fromkeys(order)), sessions, self.uses)
        try:
            return self._passes(passes, total)
        finally:
            if self.ahead is not None:
                self.ahead.close()

    def _passes(self, passes, total: int) -> np.ndarray:
        done = 0
        for slices_of, downward in passes:
            schedule = defaultdict(list)  # slice -> the tracks segmenting it in this pass, in label order
            for t in self.tracks:
                for z in slices_of(t):
                    schedule[z].append(t)
            for z in sorted(schedule, reverse=downward):
                active = [t for t in schedule[z] if not t.stopped]
                if active:
                    self.segment_slice(z, active, slices_of)
                done += 1
                progress.report(done, total)
            for t in self.tracks:
                t.prev_box, t.prev, t.prev_z, t.empty, t.stopped = t.mid_box, t.mid, t.z_mid, 0, False
        if self.how.policy.rechecks:
            recheck(self.seg, self.volume, self.tracks, self.canvas, self.how.prompt, self.how.policy)
        return self.canvas.labels

    def segment_slice(self, z: int, active: list, slices_of) -> None:
        """Slice ``z`` for the ``active`` tracks of this pass (``slices_of``: a track's slices in it)."""
        emb = self.cache.pop(z, None) or (self.ahead.get(z) if self.ahead is not None else None)
        how, emb = self.how, emb or self.seg.encode(self.volume[z])
        prompts = [t.box if z == t.z_mid or t.prev_box is None else t.prev_box for t in active]
        for t, (mask, logit, score) in zip(active, decode(self.seg, emb, np.stack(prompts), how.prompt, how.policy)):
            if mask.any():
                confidence.note(t.label, score)
            self.follow(t, z, mask, logit)
            area = int(np.count_nonzero(mask))
            t.largest = max(t.largest, area)
            t.empty = 0 if area and area >= how.shrink * t.largest else t.empty + 1
            if how.stop and t.empty >= how.stop:  # this pass of the box ends here
                t.stopped = True
                rest = slices_of(t)
                for zz in rest[rest.index(z) + 1:]:
                    self.uses[zz] -= 1
        self.uses[z] -= len(active)
        if self.uses[z] > 0 and len(self.cache) < MAX_CACHED_SLICES:  # the other pass needs this slice too
            self.cache[z] = emb

    def follow(self, t: Track, z: int, mask: np.ndarray, logit) -> None:
        """Paint track ``t``'s mask on slice ``z`` (and, with a stride, the slices skipped since its last one) and
        keep what the next slice needs of it: its box (and the mask itself only to interpolate), so that a volume
        with many objects holds no full-size mask per object."""
        if t.prev_z is not None and t.prev is not None and abs(z - t.prev_z) > 1:  # slices skipped by the stride
            step = 1 if z > t.prev_z else -1
            between = range(t.prev_z + step, z, step)
            for zz, filled in zip(between, interpolate_masks(t.prev, mask, len(between))):
                self.canvas.paint(zz, filled, t.label)
        t.prev_box, t.prev_z = self.frame.box_from_mask(mask, t.label, self.how.margin), z
        t.prev = mask if self.how.stride > 1 else None
        if z == t.z_mid:
            t.mid_box, t.mid = t.prev_box, t.prev
        self.canvas.paint(z, mask, t.label, logit)
        if self.how.policy.rechecks:
            t.areas[z] = int(mask.sum())
            t.boxes[z] = t.prev_box


class Ahead:
    """A volume's slices encoded ahead of the propagation by several encoder sessions at once, in the order the
    passes need them, at most two per session waiting; a slice no pass needs any more (``uses``: a pass stopped)
    is not started."""

    def __init__(self, seg: BoxSegmenter, volume: np.ndarray, order: list, sessions: list, uses: Counter):
        self.seg, self.volume, self.uses = seg, volume, uses
        self.order = iter(order)
        self.free: queue.SimpleQueue = queue.SimpleQueue()
        for session in sessions:
            self.free.put(session)
        self.pool = ThreadPoolExecutor(len(sessions), thread_name_prefix="litemedsam-slices")
        self.limit = 2 * len(sessions)
        self.pending: dict = {}
        self.fill()

    def fill(self) -> None:
        while len(self.pending) < self.limit:
            z = next(self.order, None)
            if z is None:
                return
            if self.uses[z] > 0:
                self.pending[z] = self.pool.submit(self.encode, z)

    def encode(self, z: int):
        session = self.free.get()
        try:
            return self.seg.encode(self.volume[z], session)
        finally:
            self.free.put(session)

    def get(self, z: int):
        """Slice ``z``'s embedding (None: not encoded ahead); the wait for it is the case's "encode" phase (the
        sessions' own seconds overlap)."""
        future = self.pending.pop(z, None)
        with phase("encode"):
            emb = future.result() if future is not None else None
        self.fill()
        return emb

    def close(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pool.shutdown(wait=True)


def recheck(seg: BoxSegmenter, volume: np.ndarray, tracks: list, canvas: Canvas, prompt: str,
            policy: MaskPolicy) -> None:
    """The 3D re-check strategies (MaskPolicy.recheck): each flagged slice of an object is decoded again with
    the box around its neighbours' masks and repainted; each slice is encoded once for all its objects."""
    todo = defaultdict(list)  # slice -> (track, prompt box)
    for t in tracks:
        for z, a, b in policy.recheck(t.areas, t.z_mid):
            if t.boxes[a] is not None and t.boxes[b] is not None:
                box = np.concatenate([np.minimum(t.boxes[a][:2], t.boxes[b][:2]),
                                      np.maximum(t.boxes[a][2:], t.boxes[b][2:])])
                todo[z].append((t, box))
    for z in sorted(todo):
        emb = seg.encode(volume[z])
        items = todo[z]
        for (t, _), (mask, logit, _) in zip(items, decode(seg, emb, np.stack([box for _, box in items]), prompt,
                                                         policy)):
            canvas.erase(z, t.label)
            canvas.paint(z, mask, t.label, logit)


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


def segment_multiview(seg: BoxSegmenter, volume: np.ndarray, boxes: np.ndarray, skipped=(),
                      how: Propagation = Propagation()) -> np.ndarray:
    """Propagate every box through axial, coronal and sagittal slices and fuse by majority vote."""
    views = []
    for axes, columns in VIEWS.values():
        turned = segment_3d(seg, np.ascontiguousarray(volume.transpose(axes)), boxes[:, columns], skipped, how)
        views.append(turned.transpose(np.argsort(axes)))
    return majority_vote(*views)
