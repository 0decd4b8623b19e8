"""Interactive segmentation of one case (what ``litemedsam serve`` drives; no web code here): a Document holds a
case read by litemedsam.io.formats and its label map, and segments one box at a time with the same router, models
and pipeline as ``infer``, so a box gives the mask ``infer`` gives for that box. Image embeddings are kept by
slice content in an EmbeddingCache bounded in bytes (a slice is encoded once, however many boxes are drawn on
it); edits can be undone; a 3D propagation reports progress and can be cancelled.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np

from litemedsam.core import progress
from litemedsam.io import formats
from litemedsam.io.cases import clip_boxes
from litemedsam.core.errors import CaseError, shown
from litemedsam.io.formats.registry import module_for
from litemedsam.io.given_boxes import CaseInputs
from litemedsam.io.intensity import CT_WINDOW, modality_of

MAX_UNDO = 50  # edits that can be undone, at most
MAX_UNDO_BYTES = 256 << 20  # and the memory they may hold (the latest edit is always kept)


class Cancelled(Exception):
    """A propagation was cancelled."""


class EmbeddingCache:
    """Encoded images by (model, image content), least recently used dropped beyond ``max_bytes``; an image
    being encoded by one thread is waited for by the others, not encoded twice."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes, self.bytes = max_bytes, 0
        self.items: OrderedDict = OrderedDict()
        self.pending: dict = {}  # key -> Event set when its encoding ends
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_encode(self, key, encode):
        while True:
            with self.lock:
                emb = self.items.get(key)
                if emb is not None:
                    self.items.move_to_end(key)
                    self.hits += 1
                    return emb
                running = self.pending.get(key)
                if running is None:
                    self.pending[key] = threading.Event()
                    self.misses += 1
                    break
            running.wait()  # then look again: done, or failed (or too large to keep) and encoded here
        try:
            emb = encode()
            self._put(key, emb)
            return emb
        finally:
            with self.lock:
                self.pending.pop(key).set()

    def _put(self, key, emb) -> None:
        size = emb.features.nbytes
        with self.lock:
            if key in self.items or size > self.max_bytes:
                return
            self.items[key] = emb
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self.items.popitem(last=False)
                self.bytes -= old.features.nbytes


class CachingSegmenter:
    """A box segmenter whose ``encode`` goes through an EmbeddingCache; everything else is the segmenter's."""

    def __init__(self, segmenter, cache: EmbeddingCache, name: str):
        self.segmenter, self.cache, self.name = segmenter, cache, name

    def encode(self, image: np.ndarray):
        key = (self.name, image.shape, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest())
        return self.cache.get_or_encode(key, lambda: self.segmenter.encode(image))

    def __getattr__(self, name):
        return getattr(self.segmenter, name)


class Document:
    """One open case: its image, its label map (uint16, the image's shape without colour) and its edits.

    ``prompting`` is a litemedsam.methods.prompting.BoxPrompting (the router), ``segmenters`` a litemedsam.models.segmenter.Segmenters.
    Edits are serialised by ``lock``. ``inputs`` (litemedsam.io.given_boxes.CaseInputs) are the intensity options
    the image was read with.
    """

    def __init__(self, case, target: Path, prompting, segmenters, cache: EmbeddingCache, labels=None, inputs=None):
        self.case, self.target, self.inputs = case, target, inputs or CaseInputs()
        self.prompting, self.segmenters, self.cache = prompting, segmenters, cache
        shape = case.image.shape[:2] if case.dim == "2D" else case.image.shape
        self.labels = np.zeros(shape, np.uint16)
        if labels is not None:
            if labels.shape != shape:
                raise CaseError(f"its segmentation {shown(target.name)} has shape {labels.shape}, the image {shape}")
            if labels.min(initial=0) < 0 or labels.max(initial=0) > 65535:
                raise CaseError(f"its segmentation {shown(target.name)} holds labels outside 0-65535")
            self.labels[...] = labels
        values, counts = np.unique(self.labels, return_counts=True)
        self.counts = Counter(dict(zip(values.tolist(), counts.tolist())))  # label -> voxels
        self.undo_stack: list = []  # (flat indices, their previous labels) per edit
        self.lock = threading.Lock()

    @property
    def depth(self) -> int:
        return 1 if self.case.dim == "2D" else self.labels.shape[0]

    def objects(self) -> list:
        """[(label, voxels)] of the labels present (kept up to date by each edit: no pass over a volume)."""
        return sorted((label, n) for label, n in self.counts.items() if label and n)

    def next_label(self) -> int:
        return max((label for label, n in self.counts.items() if n), default=0) + 1

    def model_for(self) -> str:
        return self.prompting.choose(self._case_with(np.zeros((1, 4 if self.case.dim == "2D" else 6)))).model

    def warm(self, z: int = 0) -> None:
        """Encode slice ``z`` (the image, in 2D) now, so that the first box drawn on it is answered at once."""
        model = self.model_for()
        image = self.image_slice(int(z))
        segmenter = self.segmenters.get(model)
        emb = CachingSegmenter(segmenter, self.cache, model).encode(image)
        if not getattr(segmenter, "warmed", False):  # ONNX Runtime's first two decoder runs are slow (~4x)
            h, w = image.shape[:2]
            for _ in range(2):
                segmenter.predict(emb, emb.frame.boxes_to_model([[0, 0, w - 1, h - 1]]))
            segmenter.warmed = True

    def _case_with(self, boxes: np.ndarray, starts=None):
        return dataclasses.replace(self.case, boxes=np.asarray(boxes, np.int64), skipped=[], warnings=[],
                                   starts=starts)

    @property
    def raw(self) -> bool:
        """Whether the image was mapped to 0-255 from the file's own intensities (NIfTI, NRRD/MHA, DICOM), so that
        another intensity window changes what the model sees (infer's --window)."""
        return self.case.fmt in formats.RAW_INTENSITIES

    @property
    def window(self) -> tuple | None:
        """The intensity window the image was read with (level, width), None for percentile clipping."""
        if not self.raw:
            return None
        return self.inputs.window or (CT_WINDOW if modality_of(self.case.path.name, self.inputs.modality
                                                                 or self.case.modality) == "CT" else None)

    def rewindow(self, window: tuple) -> None:
        """Read the image again through ``window`` (level, width), as infer's --window does; the labels stay."""
        inputs = dataclasses.replace(self.inputs, window=tuple(window))
        case = formats.read(self.case.path, inputs, require_boxes=False)
        if case.image.shape != self.case.image.shape:
            raise CaseError("its file changed since it was opened; reopen it")
        with self.lock:
            self.case, self.inputs = case, inputs

    def image_slice(self, z: int) -> np.ndarray:
        return self.case.image if self.case.dim == "2D" else self.case.image[z]

    def label_slice(self, z: int) -> np.ndarray:
        return self.labels if self.case.dim == "2D" else self.labels[z]

    def box_mask(self, box, z: int = 0, z_range=None, reporter=None) -> np.ndarray:
        """The mask of one box as ``infer`` makes it: 2D ``box`` = x0,y0,x1,y1; 3D: drawn on slice ``z`` and
        propagated over ``z_range`` (z0, z1, inclusive; default the slice alone), starting on ``z``. The box is
        clipped to the image as infer clips a case's boxes."""
        x0, y0, x1, y1 = box
        if self.case.dim == "2D":
            raw = [x0, y0, x1, y1]
        else:
            z0, z1 = (z, z) if z_range is None else (min(z_range), max(z_range))
            raw = [x0, y0, z0, x1, y1, z1]
        boxes, skipped, warnings = clip_boxes([raw], self.case.dim, self.case.image.shape)
        if skipped:
            raise CaseError(warnings[0].split("; ")[0])  # inverted, or outside the image
        if self.case.dim == "3D" and not boxes[0, 2] <= z <= boxes[0, 5]:
            raise CaseError(f"slice {z} is not within the slices {boxes[0, 2]}-{boxes[0, 5]} of the box")
        case = self._case_with(boxes, starts=None if self.case.dim == "2D" else [int(z)])
        plan = self.prompting.choose(case)
        segmenter = CachingSegmenter(self.segmenters.get(plan.model), self.cache, plan.model)
        with progress.reporting(reporter):
            return self.prompting.segment(segmenter, case, plan) == 1

    def paint(self, mask: np.ndarray, label: int | None = None, slices: tuple | None = None,
              add: bool = False) -> int:
        """Put ``mask`` in the label map as ``label`` or as a new object; the new object wins where it overlaps
        others. An existing object's voxels are replaced only where the mask was made: on ``slices`` (first,
        last; a 3D mask from one slice or a propagated range), the whole image in 2D; elsewhere the object stays.
        With ``add``, nothing of it is removed (the mask is another region of the object). Returns its label."""
        with self.lock:
            new = label is None or not self.counts.get(int(label))
            label = self.next_label() if label is None else int(label)
            if not 1 <= label <= 65535:
                raise CaseError(f"label {label} is not 1-65535")
            if new or add:  # nothing of the object to remove
                changed = np.flatnonzero(mask & (self.labels != label))
            else:
                old = self.labels == label
                if slices is not None and self.case.dim == "3D":  # the object on other slices is not redrawn
                    first, last = min(slices), max(slices)
                    old[:first] = False
                    old[last + 1:] = False
                changed = np.flatnonzero((old & ~mask) | (mask & (self.labels != label)))
            self._edit(changed, np.where(mask.ravel()[changed], label, 0))
            return label

    def has(self, label: int) -> int:
        """How many voxels object ``label`` has (0: none, a free label)."""
        return self.counts.get(int(label), 0)

    def erase(self, label: int) -> int:
        """Remove object ``label``; returns the voxels removed."""
        with self.lock:
            changed = np.flatnonzero(self.labels == int(label))
            self._edit(changed, np.zeros(len(changed), np.uint16))
            return len(changed)

    def undo(self) -> bool:
        with self.lock:
            if not self.undo_stack:
                return False
            where, previous = self.undo_stack.pop()
            self._set(where, previous)
            return True

    def _edit(self, where: np.ndarray, values) -> None:
        if len(where):
            self.undo_stack.append((where, self.labels.ravel()[where].copy()))
            del self.undo_stack[:-MAX_UNDO]
            while len(self.undo_stack) > 1 and sum(w.nbytes + p.nbytes for w, p in self.undo_stack) > MAX_UNDO_BYTES:
                del self.undo_stack[0]  # the oldest edits of a large volume are no longer undoable
            self._set(where, values)

    def _set(self, where: np.ndarray, values) -> None:
        flat = self.labels.ravel()  # a view: labels is contiguous
        for value, n in zip(*np.unique(flat[where], return_counts=True)):
            self.counts[int(value)] -= int(n)
        flat[where] = values
        for value, n in zip(*np.unique(flat[where], return_counts=True)):
            self.counts[int(value)] += int(n)

    def save(self) -> Path:
        """Write the label map in the input's format (its output name) and return its path."""
        with self.lock:
            labels = self.labels if self.labels.max(initial=0) > 255 else self.labels.astype(np.uint8)
            formats.write(self.case, labels, self.target)
        return self.target


def open_case(path: Path, output_dir: Path, prompting, segmenters, cache: EmbeddingCache, inputs=None,
              target: Path | None = None) -> Document:
    """A Document of the case at ``path``, saved to ``target`` (default: its output name in ``output_dir``), with
    its labels from there when ``infer`` (or a save) wrote them."""
    case = formats.read(path, inputs, require_boxes=False)
    target = target or output_dir / formats.output_name(path)
    labels = None
    if target.is_file():
        try:
            labels = module_for(target).read_labels(target)
        except CaseError as e:
            raise CaseError(f"its segmentation {shown(target.name)}: {e}") from None
        if case.dim == "2D" and labels.ndim == 3:
            labels = labels[..., 0]
    return Document(case, target, prompting, segmenters, cache, labels, inputs)
