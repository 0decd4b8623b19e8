"""Interactive segmentation of one case (what ``litemedsam serve`` drives; no web code here): a Document holds a
case read by litemedsam.io.formats and its label map, and segments one box at a time with the same router, models
and pipeline as ``infer``, so a box gives the mask ``infer`` gives for that box. Image embeddings are kept by
slice content in an EmbeddingCache bounded in bytes (a slice is encoded once, however many boxes are drawn on
it); edits can be undone; a 3D propagation reports progress and can be cancelled.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import stat
import struct
import threading
import zlib
from collections import Counter, OrderedDict
from pathlib import Path

import cv2
import numpy as np

from litemedsam.core import confidence, progress
from litemedsam.io import formats
from litemedsam.io.cases import clip_boxes, make_case
from litemedsam.core.errors import CaseError, shown
from litemedsam.io.given_boxes import CaseInputs
from litemedsam.io.intensity import CT_WINDOW, modality_of
from litemedsam.methods import refine
from litemedsam.core.safeio import write_bytes, write_text

WORK_FOLDER = ".litemedsam-work"  # beside the outputs: each open case's unsaved edits, kept after every edit
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

    def __init__(self, case, target: Path, prompting, segmenters, cache: EmbeddingCache, labels=None, inputs=None,
                 unsaved: bool = False, names: dict | None = None):
        self.case, self.target, self.inputs = case, target, inputs or CaseInputs()
        self.names = dict(names or {})  # label -> {"name": ..., "color": [r, g, b] or None}: what the user called it
        self.unsaved = unsaved  # edits not in the output file yet (they are in the work file)
        self.confidence: dict = {}  # label -> the confidence of the box that made it (none for other edits)
        self.autosave_problem = ""  # why the last edit could not be kept in the work file, if it could not
        self.behind = False  # edits in memory that the work file lacks (a write failed): never closed silently
        self.readonly = ""  # why edits are refused (its work folder cannot be read), if they are
        self.notice = ""  # what the page should say once opened (a damaged work file moved aside)
        self.prompting, self.segmenters, self.cache = prompting, segmenters, cache
        shape = case.label_shape
        self.labels = np.zeros(shape, np.uint16)
        if labels is not None:
            if labels.shape != shape:
                raise CaseError(f"its segmentation {shown(target.name)} has shape {labels.shape}, the image {shape}")
            if labels.min(initial=0) < 0 or labels.max(initial=0) > 65535:
                raise CaseError(f"its segmentation {shown(target.name)} holds labels outside 0-65535")
            self.labels[...] = labels
        self._count()
        self.undo_stack: list = []  # (flat indices, their previous labels) per edit
        self.redo_stack: list = []  # (flat indices, their labels before the undo) per undone edit; a new edit clears it
        self.lock = threading.Lock()
        self._values = None  # the file's own voxel values, read by value_at when first asked

    def _count(self) -> None:
        values, counts = np.unique(self.labels, return_counts=True)
        self.counts = Counter(dict(zip(values.tolist(), counts.tolist())))  # label -> voxels

    @property
    def depth(self) -> int:
        return 1 if self.case.dim == "2D" else self.labels.shape[0]

    def objects(self) -> list:
        """[(label, voxels)] of the labels present (kept up to date by each edit: no pass over a volume)."""
        return sorted((label, n) for label, n in self.counts.items() if label and n)

    def next_label(self) -> int:
        """The label of a new object: one past the highest, else (past 65535) the lowest free one."""
        top = max((label for label, n in self.counts.items() if n), default=0) + 1
        if top <= 65535:
            return top
        free = next((label for label in range(1, 65536) if not self.counts.get(label)), None)
        if free is None:
            raise CaseError("every label 1-65535 is an object: delete one to make another")
        return free

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
        return self.inputs.window or (CT_WINDOW if self.modality == "CT" else None)

    @property
    def modality(self) -> str | None:
        """The case's modality as infer decides it (given, the file's, its intensities', its name's)."""
        return modality_of(self.case.path.name, self.inputs.modality or self.case.modality)

    def rewindow(self, window: tuple | None) -> None:
        """Read the image again through ``window`` (level, width), as infer's --window does, or (None) as infer
        reads it without one (the CT window for a CT, else percentile clipping); the labels stay."""
        inputs = dataclasses.replace(self.inputs, window=None if window is None else tuple(window))
        case = formats.read(self.case.path, inputs, require_boxes=False)
        if case.image.shape != self.case.image.shape:
            raise CaseError("its file changed since it was opened; reopen it")
        with self.lock:
            self.case, self.inputs = case, inputs

    def image_slice(self, z: int, plane: str = "z") -> np.ndarray:
        """The image of slice ``z`` (2D: the image), or of the cut at index ``z`` of a volume's ``plane`` ("y": a
        row across the slices, "x": a column across them; litemedsam.io.formats.plane_image)."""
        return self.case.image if self.case.dim == "2D" else formats.plane_image(self.case.image, plane, z)

    def label_slice(self, z: int, plane: str = "z") -> np.ndarray:
        return self.labels if self.case.dim == "2D" else formats.plane_image(self.labels, plane, z)

    def plane_size(self, plane: str = "z") -> int:
        """How many cuts a volume has in ``plane`` (its slices, rows or columns); 1 for a 2D image."""
        return 1 if self.case.dim == "2D" else self.labels.shape["zyx".index(plane)]

    def value_at(self, z: int, y: int, x: int) -> float | None:
        """The file's own value at voxel (z, y, x) (Hounsfield units of a CT) for formats that keep their
        intensities (NIfTI, NRRD/MHA, DICOM; read once, on the first call), None for the others."""
        if not self.raw or self.case.dim != "3D":
            return None
        with self.lock:
            if self._values is None:
                values = formats.read_values(self.case.path)
                if values.shape != self.labels.shape:
                    raise CaseError("its file changed since it was opened; reopen it")
                self._values = values
        return float(self._values[z, y, x])

    def _cut_mask(self, box, plane: str, index: int) -> tuple[np.ndarray, float | None]:
        """The mask of a box drawn on the cut at ``index`` of ``plane`` ("y" or "x") of a volume: the cut is
        segmented as a 2D image by the router's 2D rule for the case's modality, after resampling it to square
        pixels (a cut across 5 mm slices of 0.8 mm pixels would reach the model squashed); the mask is put back
        on the cut's own pixels. Returns a volume-sized mask and its confidence."""
        image = self.image_slice(index, plane)
        h, w = image.shape[:2]
        rows, cols = formats.PLANES[plane]
        mm = formats.spacing(self.case) or (1.0, 1.0, 1.0)
        sy, sx = mm[rows] / min(mm[rows], mm[cols]), mm[cols] / min(mm[rows], mm[cols])
        size = (max(1, round(w * sx)), max(1, round(h * sy)))
        square = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) if (sx, sy) != (1.0, 1.0) else image
        x0, y0, x1, y1 = box
        scaled = [x0 * sx, y0 * sy, (x1 + 1) * sx - 1, (y1 + 1) * sy - 1]
        case = make_case(self.case.path, square, [scaled], dim="2D", fmt=self.case.fmt,
                         modality=self.inputs.modality or self.case.modality)
        if case.skipped:
            raise CaseError(case.warnings[0].split("; ")[0])
        mask, score = self._segment(case)
        if mask.shape != (h, w):
            mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        full = np.zeros(self.labels.shape, bool)
        formats.plane_image(full, plane, index)[...] = mask
        return full, score

    def _segment(self, case, reporter=None) -> tuple[np.ndarray, float | None]:
        """Object 1 of ``case`` (one box) as infer segments it, through the embedding cache, and its confidence."""
        plan = self.prompting.choose(case)
        segmenter = CachingSegmenter(self.segmenters.get(plan.model), self.cache, plan.model)
        with progress.reporting(reporter), confidence.collecting() as noted:
            mask = self.prompting.segment(segmenter, case, plan) == 1
        return mask, confidence.summary(noted).get(1)

    def box_mask(self, box, z: int = 0, z_range=None, reporter=None, plane: str = "z") -> tuple[np.ndarray, float | None]:
        """The mask of one box as ``infer`` makes it, and its confidence (the decoder's mean predicted IoU, as
        run.json records it): 2D ``box`` = x0,y0,x1,y1; 3D: drawn on slice ``z`` and propagated over ``z_range``
        (z0, z1, inclusive; default the slice alone), starting on ``z``; or drawn on the cut ``z`` of ``plane``
        "y" or "x" (that cut alone). The box is clipped to the image as infer clips a case's boxes."""
        if plane != "z" and self.case.dim == "3D":
            return self._cut_mask(box, plane, z)
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
        return self._segment(self._case_with(boxes, starts=None if self.case.dim == "2D" else [int(z)]), reporter)

    def paint(self, mask: np.ndarray, label: int | None = None, slices: tuple | None = None,
              add: bool = False, plane: str = "z") -> int:
        """Put ``mask`` in the label map as ``label`` or as a new object; the new object wins where it overlaps
        others. An existing object's voxels are replaced only where the mask was made: on ``slices`` (first,
        last; a 3D mask from one slice or a propagated range; cuts of ``plane``), the whole image in 2D; elsewhere
        the object stays.
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
                    along = np.moveaxis(old, "zyx".index(plane), 0)  # a view
                    along[:first] = False
                    along[last + 1:] = False
                changed = np.flatnonzero((old & ~mask) | (mask & (self.labels != label)))
            self._edit(changed, np.where(mask.ravel()[changed], label, 0))
            return label

    def brush(self, z: int, points, radius: int, label: int | None, plane: str = "z") -> int:
        """A brush stroke on slice ``z`` (2D: the image; or the cut ``z`` of ``plane``): the disks of ``radius``
        pixels along ``points`` (x, y) become object ``label`` (a new one when None; added to it when it exists),
        or with ``label`` 0 (the eraser) background. Only that slice is looked at and changed. Returns the label
        painted."""
        h, w = self.label_slice(0, plane).shape
        stroke = np.zeros((h, w), np.uint8)
        pts = [(int(round(x)), int(round(y))) for x, y in points]
        for a, b in zip(pts, pts[1:] or pts):
            cv2.line(stroke, a, b, 1, thickness=2 * int(radius) + 1)
        for p in pts[:1] + pts[-1:]:
            cv2.circle(stroke, p, int(radius), 1, thickness=-1)
        with self.lock:
            label = self.next_label() if label is None else int(label)
            if not 0 <= label <= 65535:
                raise CaseError(f"label {label} is not 0-65535")
            rows, cols = np.nonzero(stroke.astype(bool) & (self.label_slice(z, plane) != label))
            changed = self._voxels(rows, cols, z, plane)
            self._edit(changed, np.full(len(changed), label, np.uint16))
            return label

    def click(self, label: int | None, kind: str, at: tuple) -> int:
        """A foreground (``kind`` "fg") or background ("bg") click on voxel ``at`` (z, y, x; 2D: (0, y, x)) for
        object ``label``, applied as ``infer`` applies the clicks of a case (litemedsam.methods.refine): the
        object grows or shrinks around the click (and along the model's contour through it); a foreground click
        for an object that has no voxel yet (or ``label`` None: a new one) builds it with the model. One undoable
        edit; returns the label."""
        model = self.model_for()
        segmenter = CachingSegmenter(self.segmenters.get(model), self.cache, model)
        if label is None or (kind == "fg" and not self.counts.get(int(label))):
            if kind != "fg":
                raise CaseError("a background click needs an object to take the voxel from: select one")
            mask = refine.seed(segmenter, self._case_with(np.zeros((0, 4 if self.case.dim == "2D" else 6))), {1: at}) == 1
            if not mask.any():
                raise CaseError("the model finds no object around that click: draw a box")
            return self.paint(mask, label)
        volume, grey = refine.volumes(self.labels, self.case.image)
        with self.lock:
            logits = refine.model_logits(segmenter, self.case.image, self.labels)
            found = refine.change(volume, grey, int(label), kind, at, refine.millimetres(formats.spacing(self.case)),
                                  logits)
            if found is not None:
                window, take, value = found
                where = np.nonzero(take)
                at_voxels = [w + s.start for w, s in zip(where, window)]
                changed = np.ravel_multi_index(at_voxels, volume.shape)  # a 2D map's flat indices are its (1, H, W)'s
                self._edit(changed, np.full(len(changed), value, np.uint16))
        return int(label)

    def tidy(self, z: int, label: int, action: str, plane: str = "z") -> int:
        """On slice ``z`` (or the cut ``z`` of ``plane``), object ``label``: ``fill`` its holes (background
        enclosed by it; other objects stay) or remove its ``islands`` (all but its largest 8-connected region).
        One undoable edit; returns the pixels changed."""
        with self.lock:
            cut = self.label_slice(z, plane)
            mask = cut == label
            if action == "fill":
                from scipy import ndimage  # here: SciPy's import would add ~0.15 s to the server's start

                change = ndimage.binary_fill_holes(mask) & (cut == 0)
                value = label
            else:
                n, parts, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
                largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if n > 1 else 0
                change = mask & (parts != largest)
                value = 0
            rows, cols = np.nonzero(change)
            self._edit(self._voxels(rows, cols, z, plane), np.full(len(rows), value, np.uint16))
            return len(rows)

    def _voxels(self, rows, cols, z: int, plane: str) -> np.ndarray:
        """Flat indices of the label map of pixels (rows, cols) of slice ``z`` (2D: the image) or the cut ``z`` of
        ``plane``: the plane's fixed index put back among the other two."""
        if self.case.dim == "2D":
            return np.ravel_multi_index((rows, cols), self.labels.shape)
        return np.ravel_multi_index(voxel_of(plane, np.full(len(rows), z), rows, cols), self.labels.shape)

    def has(self, label: int) -> int:
        """How many voxels object ``label`` has (0: none, a free label)."""
        return self.counts.get(int(label), 0)

    def erase(self, label: int) -> int:
        """Remove object ``label``; returns the voxels removed. Label 0 (the background) is no object."""
        if not 1 <= int(label) <= 65535:
            raise CaseError(f"label {label} is not an object (1-65535)")
        with self.lock:
            changed = np.flatnonzero(self.labels == int(label))
            self._edit(changed, np.zeros(len(changed), np.uint16))
            return len(changed)

    def undo(self) -> bool:
        """Take the last edit back (it can be redone); False when there is none."""
        return self._step(self.undo_stack, self.redo_stack)

    def redo(self) -> bool:
        """Make the last undone edit again; False when there is none (a new edit since forgets undone ones)."""
        return self._step(self.redo_stack, self.undo_stack)

    def _step(self, source: list, target: list) -> bool:
        with self.lock:
            self._writable()
            if not source:
                return False
            where, values = source.pop()
            target.append((where, self.labels.ravel()[where].copy()))
            self._set(where, values)
            self._keep(where, values)
            return True

    @property
    def work_file(self) -> Path:
        """Where the unsaved edits are kept: ``.litemedsam-work/<output name>.edits`` in the output's folder."""
        return work_file(self.target)

    def _keep(self, where: np.ndarray, values) -> None:
        """After an edit: append it (the voxels it set and their labels) to the work file, so that no edit is lost
        when the page is reloaded, another case is opened or the server restarts; only what changed is written.
        A failure (disk full) is reported and leaves no partial record; the edit stays in memory, and the next
        edit writes the work file whole (every voxel that differs from the output) before appending goes on."""
        self.unsaved = True
        try:
            if self.behind:
                write_work(self.work_file, self._saved_labels(), self.labels)
            else:
                append_edit(self.work_file, where, values)
            self.behind, self.autosave_problem = False, ""
        except (OSError, CaseError) as e:
            self.behind = True
            self.autosave_problem = f"the edits could not be kept in {shown(self.work_file.name)} ({shown(e)}); save"

    def _saved_labels(self) -> np.ndarray:
        """The label map the output file holds (zeros without one): what the work file's edits apply to."""
        labels = read_output(self.case, self.target)
        return np.zeros(self.labels.shape, np.uint16) if labels is None else labels

    def restore(self) -> None:
        """Take back the unsaved names and edits the work folder holds (an earlier page or server left them). A work
        file that is damaged (a record that is not one, edits outside the image, a link) gives every valid record,
        is moved aside (``<name>.damaged-N``, said in ``notice``) and written again with them. A work folder that
        cannot be read opens the case read-only, as last saved (``readonly``)."""
        work, kept_names = self.work_file, names_work_file(self.target)
        try:
            if kept_names.is_file():
                self.names, self.unsaved = read_names(kept_names), True
            data = read_work(work)
        except OSError as e:
            self.readonly = f"its work folder cannot be read ({shown(e.strerror or e)}): opened read-only, as last saved"
            return
        if data is None:
            return
        count, damage = replay_edits(data, self.labels)
        self._count()
        self.unsaved = self.unsaved or count > 0
        if not damage:
            return
        try:
            aside = next(work.with_name(f"{work.name}.damaged-{n}") for n in range(1, 10 ** 6)
                         if not os.path.lexists(work.with_name(f"{work.name}.damaged-{n}")))
            os.rename(work, aside)
        except OSError as e:
            self.readonly = f"its work file {shown(work.name)} is damaged and cannot be moved aside ({shown(e)}): " \
                            f"opened read-only"
            return
        self.notice = f"its work file was damaged ({damage}): {count} edit(s) kept, the file moved aside as " \
                      f"{shown(aside.name)}"
        if count:
            try:
                write_work(work, self._saved_labels(), self.labels)
            except (OSError, CaseError) as e:
                self.behind = True
                self.autosave_problem = f"the edits could not be kept in {shown(work.name)} ({shown(e)}); save"

    def _writable(self) -> None:
        if self.readonly:
            raise CaseError(f"this case is read-only: {self.readonly}")

    def name(self, label: int, name: str | None = None, color=None) -> dict:
        """Name object ``label`` and/or give it a colour ([r, g, b]); kept with the unsaved edits (the work
        folder) until Save writes them beside the output (``<output>.labels.json``). CaseError for a bad one."""
        with self.lock:
            self._writable()
            entry = dict(self.names.get(int(label), {"name": "", "color": None}))
            if name is not None:
                entry["name"] = name
            if color is not None:
                entry["color"] = color
            entry = checked_name(label, entry)
            self.names[int(label)] = entry
            self.unsaved = True
            try:
                private_folder(self.work_file.parent)
                write_names(names_work_file(self.target), self.names)
                self.autosave_problem = ""
            except OSError as e:
                self.autosave_problem = f"the names could not be kept ({shown(e)}); save"
            return entry

    def discard(self) -> None:
        """Drop the unsaved edits: the label map as the output file holds it (or empty), no work file."""
        with self.lock:
            self._writable()
            labels = read_output(self.case, self.target)
            self.labels[...] = 0 if labels is None else labels
            self._count()
            self.undo_stack.clear()
            self.redo_stack.clear()
            self.work_file.unlink(missing_ok=True)
            names_work_file(self.target).unlink(missing_ok=True)
            self.names = read_names(names_file(self.target))
            self.unsaved, self.autosave_problem, self.behind = False, "", False

    def _edit(self, where: np.ndarray, values) -> None:
        self._writable()
        if len(where):
            self.undo_stack.append((where, self.labels.ravel()[where].copy()))
            self.redo_stack.clear()
            del self.undo_stack[:-MAX_UNDO]
            while len(self.undo_stack) > 1 and sum(w.nbytes + p.nbytes for w, p in self.undo_stack) > MAX_UNDO_BYTES:
                del self.undo_stack[0]  # the oldest edits of a large volume are no longer undoable
            self._set(where, values)
            self._keep(where, self.labels.ravel()[where])

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
            self._writable()
            labels = self.labels if self.labels.max(initial=0) > 255 else self.labels.astype(np.uint8)
            formats.write(self.case, labels, self.target)
            if self.names or names_file(self.target).exists():
                write_names(names_file(self.target), self.names)
            self.work_file.unlink(missing_ok=True)
            names_work_file(self.target).unlink(missing_ok=True)
            self.unsaved, self.autosave_problem, self.behind = False, "", False
        return self.target


def voxel_of(plane: str, index, row, column) -> tuple:
    """The voxel (z, y, x) of pixel (row, column) of the cut ``index`` of ``plane`` (numbers or arrays of them):
    the plane's fixed index put back among the other two."""
    at = [row, column]
    at.insert("zyx".index(plane), index)
    return tuple(at)


def work_file(target: Path) -> Path:
    return target.parent / WORK_FOLDER / f"{target.name}.edits"


def names_work_file(target: Path) -> Path:
    """Where the objects' names and colours are kept until saved: beside the work file (``<output>.names``)."""
    return work_file(target).with_suffix(".names")


def names_file(target: Path) -> Path:
    """Where the objects' names and colours are saved: beside the output, ``<output name>.labels.json``."""
    return target.with_name(target.name + ".labels.json")


MAX_NAME = 64  # characters of an object's name


def checked_name(label, entry) -> dict:
    """An object's name entry {"name": text, "color": [r, g, b] or None} as checked; CaseError saying what is wrong."""
    if not (isinstance(label, int) and not isinstance(label, bool) and 1 <= label <= 65535):
        raise CaseError(f"label {shown(label)} is not 1-65535")
    if not isinstance(entry, dict):
        raise CaseError(f"label {label}: a name entry must be an object")
    name, color = entry.get("name", ""), entry.get("color")
    if not (isinstance(name, str) and len(name) <= MAX_NAME and name.isprintable()):
        raise CaseError(f"label {label}: a name is at most {MAX_NAME} printable characters")
    if color is not None and not (isinstance(color, list) and len(color) == 3 and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)):
        raise CaseError(f"label {label}: a colour is [r, g, b], each 0-255")
    return {"name": name.strip(), "color": color}


def write_names(path: Path, names: dict) -> None:
    write_text(path, json.dumps({"labels": {str(k): v for k, v in sorted(names.items())}}, indent=1) + "\n")


def read_names(path: Path) -> dict:
    """The names and colours a names file holds ({} without one); an entry that fails its checks is left out, a
    file that is not one (too large, not JSON, a link) is ignored."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            return {}
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: arrays nested 100,000 deep
        return {}
    found = {}
    for key, entry in (data.get("labels") if isinstance(data, dict) and isinstance(data.get("labels"), dict) else {}).items():
        try:
            label = int(key) if key.isascii() and key.isdigit() else None
            found[label] = checked_name(label, entry)
        except CaseError:
            continue
    return found


EDIT = struct.Struct("<4sQI")  # a record of the work file: EDIT_MAGIC, n, the CRC-32 of what follows: n voxel
EDIT_MAGIC = b"EDT2"  # indices (<u8) and n labels (<u2)


def edit_record(where, values) -> bytes:
    payload = np.asarray(where, "<u8").tobytes() + np.asarray(values, "<u2").tobytes()
    return EDIT.pack(EDIT_MAGIC, len(payload) // 10, zlib.crc32(payload)) + payload


def private_folder(folder: Path) -> None:
    """Make the work folder and its parents; the work folder is this user's and only theirs (0700, made so when
    found open to others). OSError when it is a link or another user's: edits are never written through it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)  # ELOOP for a link
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise OSError(errno.EPERM, f"{WORK_FOLDER} belongs to another user", str(folder))
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def append_edit(path: Path, where: np.ndarray, values) -> None:
    """Append one edit to the work file ``path`` (private: its folder 0700, the file 0600; never through a link)
    and flush it to disk. When the write fails (disk full) the file is cut back to what it was: no partial
    record stays."""
    private_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        size = os.fstat(fd).st_size
        try:
            record = memoryview(edit_record(where, values))
            while record:
                record = record[os.write(fd, record):]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def write_work(path: Path, saved: np.ndarray, labels: np.ndarray) -> None:
    """The work file written whole (atomically): one record of every voxel where ``labels`` differ from the
    ``saved`` label map (the output's)."""
    private_folder(path.parent)
    where = np.flatnonzero(labels.reshape(-1) != saved.reshape(-1))
    write_bytes(path, edit_record(where, labels.reshape(-1)[where]))


def read_work(path: Path) -> bytes | None:
    """The work file's bytes (None when there is none); a link or a thing that is not a file reads as b"!" (damage)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return b"!"
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def replay_edits(data: bytes, labels: np.ndarray) -> tuple[int, str]:
    """Apply the edits of a work file's bytes to ``labels`` in order: (how many, what was damaged, "" when
    nothing). Every valid record is applied: bytes that are not one (a torn or garbled record: wrong magic,
    length or CRC) are skipped to the next record found, a record with voxels outside the label map is left out."""
    flat = labels.reshape(-1)
    pos = count = 0
    damage = []
    while pos < len(data):
        valid = pos + EDIT.size <= len(data)
        if valid:
            magic, n, crc = EDIT.unpack_from(data, pos)
            end = pos + EDIT.size + 10 * n
            valid = magic == EDIT_MAGIC and end <= len(data) and zlib.crc32(data[pos + EDIT.size:end]) == crc
        if not valid:
            found = data.find(EDIT_MAGIC, pos + 1)
            damage.append(f"{(found if found >= 0 else len(data)) - pos} bytes that are no edit")
            pos = len(data) if found < 0 else found
            continue
        where = np.frombuffer(data, "<u8", n, pos + EDIT.size)
        if n and where.max() >= flat.size:
            damage.append("an edit outside the image")
        else:
            flat[where] = np.frombuffer(data, "<u2", n, pos + EDIT.size + 8 * n)
            count += 1
        pos = end
    return count, "; ".join(dict.fromkeys(damage))


def read_output(case, target: Path):
    """The label map an output file holds for ``case`` (None: no output yet); CaseError naming it."""
    if not target.is_file():
        return None
    try:
        labels = formats.read_labels(target)[0]
    except CaseError as e:
        raise CaseError(f"its segmentation {shown(target.name)}: {e}") from None
    return labels[..., 0] if case.dim == "2D" and labels.ndim == 3 else labels


def open_case(path: Path, output_dir: Path, prompting, segmenters, cache: EmbeddingCache, inputs=None,
              target: Path | None = None) -> Document:
    """A Document of the case at ``path``, saved to ``target`` (default: its output name in ``output_dir``), with
    its labels from the output file when ``infer`` (or a save) wrote one, and the unsaved edits and names a work
    file holds (an earlier page, or server, left them: ``Document.restore``)."""
    case = formats.read(path, inputs, require_boxes=False)
    target = target or output_dir / formats.output_name(path)
    doc = Document(case, target, prompting, segmenters, cache, read_output(case, target), inputs,
                   names=read_names(names_file(target)))
    doc.restore()
    return doc
