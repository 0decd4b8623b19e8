"""The interactive core under both front ends: the browser app (litemedsam.serve.web, a Document of
litemedsam.serve.interactive: a Scene kept in a file) and the nnInteractive protocol server
(litemedsam.serve.nninteractive: a Scene per client). A Scene is one image (a litemedsam Case) and its label map,
segmented one prompt at a time with the same router, models and pipeline as ``infer`` (a box gives the mask
``infer`` gives for that box; a click the edit ``infer`` makes for it), with undo and redo. Image embeddings are
kept by slice content in an EmbeddingCache bounded in bytes (litemedsam.serve.encoding: a slice is encoded once,
however many prompts are drawn on it) and can be made ahead, in the background (``encode_ahead``); the label map,
its undo and redo and its overwrite guard are litemedsam.serve.labelmap's.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from litemedsam.core import confidence, progress
from litemedsam.core.errors import CaseError, LitemedsamError
from litemedsam.io import formats
from litemedsam.io.cases import clip_boxes, make_case
from litemedsam.io.lines import Line
from litemedsam.methods import recist, refine
from litemedsam.serve.encoding import CachingSegmenter, EmbeddingCache, ModelTurns, Reporting
from litemedsam.serve import tools
from litemedsam.serve.labelmap import LabelMap

PROPAGATION_END = (1, 0.3)  # a box's object ends at its first slice under 30% of its largest (benchmarks/bench_stop.py)
ONE_SLICE_REACH = None  # how deep a box's object may reach, over half its longer side (benchmarks/bench_recist.py)
# how a box on a coronal or sagittal cut becomes its 3D object (Scene.propagate; bench_recist --boxes)
OFF_AXIS = "cuts"
# mm (pixels without a spacing): a foreground click farther from its object is said (its ball is large)
FAR_CLICK = 15.0
FLAT = 8  # grey levels (of the model's 0-255 image): a box whose pixels span fewer holds nothing to segment (air)


class Scene(LabelMap):
    """One image and its label map (uint16, the image's shape without colour: litemedsam.serve.labelmap, with its
    undo, redo and guard), edited one prompt or tool at a time.

    ``prompting`` is a litemedsam.methods.prompting.BoxPrompting (the router), ``segmenters`` a
    litemedsam.models.segmenter.Segmenters, ``cache`` the EmbeddingCache shared by every scene of a server
    (litemedsam.serve.encoding). The model runs in ``turns`` (ModelTurns). ``edited(where, values)`` hears each
    change of the labels and ``writable()`` is asked before each (the app's Document keeps its edits in a file).
    """

    def __init__(self, case, prompting, segmenters, cache: EmbeddingCache, labels=None, turns=None, edited=None,
                 writable=None):
        super().__init__(case.label_shape, labels, edited, writable)
        self.case = case
        self.turns = turns or ModelTurns()  # shared by a server's scenes: one model run at a time, prompts first
        self.prompting, self.segmenters, self.cache = prompting, segmenters, cache

    @property
    def depth(self) -> int:
        return 1 if self.case.dim == "2D" else self.labels.shape[0]

    def model_for(self) -> str:
        return self.prompting.choose(self._case_with(np.zeros((1, 4 if self.case.dim == "2D" else 6)))).model

    def warm(self, z: int = 0) -> None:
        """Encode slice ``z`` (the image, in 2D) now, so that the first box drawn on it is answered at once."""
        with self.turns:
            self._warm(int(z))

    def _warm(self, z: int) -> None:
        model = self.model_for()
        image = self.image_slice(z)
        segmenter = self.segmenters.get(model)
        CachingSegmenter(segmenter, self.cache, model).encode(image)
        segmenter.warm_up()

    def _case_with(self, boxes: np.ndarray, starts=None):
        return dataclasses.replace(self.case, boxes=np.asarray(boxes, np.int64), skipped=[], warnings=[],
                                   starts=starts, lines=None)  # the prompt is these boxes, not the file's lines

    def image_slice(self, z: int, plane: str = "z") -> np.ndarray:
        """The image of slice ``z`` (2D: the image), or of the cut at index ``z`` of a volume's ``plane`` ("y": a
        row across the slices, "x": a column across them; litemedsam.io.formats.plane_image)."""
        return tools.cut(self.case.image, self.case.dim, z, plane)

    def label_slice(self, z: int, plane: str = "z") -> np.ndarray:
        return tools.cut(self.labels, self.case.dim, z, plane)

    def plane_size(self, plane: str = "z") -> int:
        """How many cuts a volume has in ``plane`` (its slices, rows or columns); 1 for a 2D image."""
        return 1 if self.case.dim == "2D" else self.labels.shape["zyx".index(plane)]

    def _cut_mask(self, box, plane: str, index: int) -> tuple[np.ndarray, float | None]:
        """The mask of a box drawn on the cut at ``index`` of ``plane`` ("y" or "x") of a volume: the cut is
        segmented as a 2D image by the router's 2D rule for the case's modality, resampled to square pixels
        (``Cuts``); the mask is put back on the cut's own pixels. Returns a volume-sized mask and its confidence."""
        cuts = self.cuts(plane)
        x0, y0, x1, y1 = box
        scaled = [x0 * cuts.sx, y0 * cuts.sy, (x1 + 1) * cuts.sx - 1, (y1 + 1) * cuts.sy - 1]
        case = make_case(self.case.path, cuts[index], [scaled], dim="2D", fmt=self.case.fmt,
                         modality=self.given_modality)
        if case.skipped:
            raise CaseError(case.warnings[0].split("; ")[0])
        mask, score = self._segment(case)
        full = np.zeros((len(cuts),) + mask.shape, bool)
        full[index] = mask
        return cuts.back(full), score

    def _segment(self, case, reporter=None, end: tuple | None = None) -> tuple[np.ndarray, float | None]:
        """Object 1 of ``case`` (one box) as infer segments it, through the embedding cache, and its confidence;
        ``end`` (stop, shrink): where a 3D pass ends instead of the router's rule (litemedsam.methods.pipeline)."""
        plan = self.prompting.choose(case)
        if end is not None and plan.decision is not None:
            stop, shrink = end
            how = dataclasses.replace(plan.decision.propagation, stop=stop, shrink=shrink, strategy="propagate")
            plan = dataclasses.replace(plan, decision=dataclasses.replace(plan.decision, propagation=how))
        segmenter = CachingSegmenter(self.segmenters.get(plan.model), self.cache, plan.model)
        with self.turns, progress.reporting(reporter), confidence.collecting() as noted:
            mask = self.prompting.segment(segmenter, case, plan) == 1
        return mask, confidence.summary(noted).get(1)

    def box_mask(self, box, z: int = 0, z_range=None, reporter=None,
                 plane: str = "z") -> tuple[np.ndarray, float | None]:
        """The mask of one box as ``infer`` makes it, and its confidence (the decoder's mean predicted IoU, as
        run.json records it): 2D ``box`` = x0,y0,x1,y1; 3D: drawn on slice ``z`` and propagated over ``z_range``
        (z0, z1, inclusive; default the slice alone), starting on ``z``; or drawn on the cut ``z`` of ``plane``
        "y" or "x" (that cut alone). The box is clipped to the image as infer clips a case's boxes."""
        if plane != "z" and self.case.dim == "3D":
            return self._cut_mask(box, plane, z)
        if self.case.dim == "2D":
            boxes, skipped, warnings = clip_boxes([list(box)], "2D", self.case.image.shape)
            if skipped:
                raise CaseError(warnings[0].split("; ")[0])  # inverted, or outside the image
            return self._segment(self._case_with(boxes), reporter)
        return self._segment(self._checked_box(box, z, (z, z) if z_range is None else z_range), reporter)

    def propagate(self, box, index: int, plane: str = "z", end: tuple = PROPAGATION_END, reporter=None,
                  reach: float | None = ONE_SLICE_REACH, via: str = OFF_AXIS) -> tuple[np.ndarray, float | None]:
        """The 3D object a 2D box drawn on one cut of a volume gives when nothing says where it ends (3D Slicer's and
        napari's box over the nnInteractive protocol). On a slice (``plane`` "z"): the slice ``index`` is segmented
        with ``box`` (x0, y0, x1, y1), then each next slice both ways is prompted with the mask before it, as infer
        propagates a 3D box, until the object ends by ``end`` (stop, shrink: ``stop`` slices in a row whose mask is
        empty or below ``shrink`` of the largest so far), within ``reach`` times half the box's longer side (mm)
        each way (an object is about as deep as it is wide, as a RECIST line's lesion: litemedsam.methods.recist;
        None: the whole volume). On a cut across the slices (``plane`` "y": a row, coronal; "x": a column,
        sagittal; ``box`` in the cut's pixels, its rows the slices): ``via`` "axial" takes what the box says, the
        object's slices and its extent along the cut, as a 3D box whose depth across the cut is the box's width
        (the slices' embeddings serve, as for any box); ``via`` "cuts" propagates along the cut's own axis,
        encoding each cut (resampled to square pixels: ``Cuts``). Returns a volume-sized mask and its
        confidence."""
        if self.case.dim != "3D":
            raise CaseError("a 2D image has no slices to propagate through")
        mm = formats.spacing(self.case) or (1.0, 1.0, 1.0)
        depth = self.labels.shape[0]
        if plane == "z":
            z_range = (0, depth - 1)
            if reach is not None:
                x0, y0, x1, y1 = box
                slices = max(1, math.ceil(reach * max((x1 - x0 + 1) * mm[2], (y1 - y0 + 1) * mm[1]) / 2 / mm[0]))
                z_range = (max(0, index - slices), min(depth - 1, index + slices))
            return self._segment(self._checked_box(box, index, z_range), reporter, end)
        if via == "axial":
            return self._segment(self._across(box, index, plane, mm), reporter)
        cuts = self.cuts(plane)
        x0, y0, x1, y1 = box
        scaled = [x0 * cuts.sx, y0 * cuts.sy, (x1 + 1) * cuts.sx - 1, (y1 + 1) * cuts.sy - 1]
        boxes, skipped, warnings = clip_boxes([[*scaled[:2], 0, *scaled[2:], len(cuts) - 1]], "3D", cuts.shape)
        if skipped:
            raise CaseError(warnings[0].split("; ")[0])
        case = dataclasses.replace(self._case_with(boxes, starts=[int(index)]), image=cuts)
        mask, score = self._segment(case, reporter, end)
        return cuts.back(mask), score

    def from_line(self, ends, index: int, plane: str = "z", reporter=None) -> tuple[np.ndarray, float | None]:
        """The 3D object of a RECIST line (a lesion's longest diameter) drawn on the cut ``index`` of ``plane``,
        ``ends`` (x0, y0, x1, y1) in the cut's pixels: on a slice, as ``infer`` segments a task's line
        (litemedsam.methods.recist); on a cut across the slices, the square of the line's length around its middle
        is a box drawn there (``propagate``). Returns a volume-sized mask and its confidence."""
        if self.case.dim != "3D":
            raise CaseError("a RECIST line gives a lesion in a volume: draw a box on a 2D image")
        x0, y0, x1, y1 = (int(round(v)) for v in ends)
        if (x0, y0) == (x1, y1):
            raise CaseError("the line has both ends at one pixel: drag from one edge of the lesion to the other")
        if plane == "z":
            case = dataclasses.replace(self._case_with(np.zeros((0, 6))), lines=[Line(int(index), (y0, x0), (y1, x1))])
            rule = recist.LINE_RULE
            return self._segment(recist.as_boxes(case, rule), reporter, (rule.stop, rule.shrink))
        h, w = self.label_slice(index, plane).shape
        half = np.hypot(x1 - x0, y1 - y0) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        square = [max(0, cx - half), max(0, cy - half), min(w - 1, cx + half), min(h - 1, cy + half)]
        return self.propagate([int(round(v)) for v in square], index, plane, reporter=reporter)

    def _across(self, box, index: int, plane: str, mm: tuple):
        """The case of a box drawn on the cut ``index`` of ``plane`` ("y" or "x"; its rows the slices, its columns x
        or y) as a 3D box: the slices and the extent along the cut the box gives, across the cut the box's width
        (in mm) centred on the cut; it starts on the box's middle slice."""
        c0, z0, c1, z1 = box
        along, across = (2, 1) if plane == "y" else (1, 2)  # the cut's columns' axis, the axis the cut is fixed on
        half = (c1 - c0 + 1) * mm[along] / 2 / mm[across]
        lo, hi = index - half, index + half
        given = [c0, lo, z0, c1, hi, z1] if plane == "y" else [lo, c0, z0, hi, c1, z1]
        boxes, skipped, warnings = clip_boxes([given], "3D", self.case.image.shape)
        if skipped:
            raise CaseError(warnings[0].split("; ")[0])
        return self._case_with(boxes, starts=[int((boxes[0, 2] + boxes[0, 5]) // 2)])

    def _checked_box(self, box, z: int, z_range):
        """The case of one box x0, y0, x1, y1 on slice ``z`` over ``z_range`` (inclusive), clipped as infer clips
        a case's boxes; CaseError for a box outside the image or a slice outside its range."""
        x0, y0, x1, y1 = box
        boxes, skipped, warnings = clip_boxes([[x0, y0, min(z_range), x1, y1, max(z_range)]], "3D",
                                              self.case.image.shape)
        if skipped:
            raise CaseError(warnings[0].split("; ")[0])  # inverted, or outside the image
        if not boxes[0, 2] <= z <= boxes[0, 5]:
            raise CaseError(f"slice {z} is not within the slices {boxes[0, 2]}-{boxes[0, 5]} of the box")
        return self._case_with(boxes, starts=[int(z)])

    def forget_embeddings(self, plane: str = "z") -> None:
        """Drop this image's embeddings (of its cuts of ``plane``: "y", "x") from the shared memory cache (a new
        image came, its client left), so that the next image's encoding has the room; with a disk store they are
        read back if it comes again."""
        try:
            model = self.model_for()
        except LitemedsamError:
            return
        caching = CachingSegmenter(self.segmenters.get(model), self.cache, model)
        images = self._images(plane)
        self.cache.forget([caching.key(images[z]) for z in range(len(images))])

    def _images(self, plane: str = "z"):
        """The images a propagation over ``plane`` encodes: the slices ("z"), or the cuts across them resampled to
        square pixels (Cuts), by index."""
        return _Slices(self) if plane == "z" or self.case.dim != "3D" else self.cuts(plane)

    def cuts(self, plane: str) -> Cuts:
        """The volume's cuts across its slices (``plane`` "y", "x") as a box drawn on one propagates over them,
        resampled to square pixels by the file's spacing."""
        return Cuts(self.case.image, plane, formats.spacing(self.case))

    def encode_ahead(self, focus, stop: threading.Event, done=None, plane: str = "z") -> int:
        """Encode the slices of a volume (the image of a 2D case; with ``plane`` "y" or "x", the cuts across the
        slices a box drawn there propagates over) into the embedding cache, the one nearest to ``focus()`` (an
        index, read before each turn: where the user works now) first, so that prompts drawn later decode only.
        Ends when every one is encoded, ``stop`` is set or the cache is full (it never pushes out what it
        encoded; beyond it, slices go to the disk store, a view's cuts nowhere). Each turn encodes as many at
        once as the segmenter has slice encoders (litemedsam.models.parallel: one session each; one turn, one
        slice on most machines) and waits for the model's background turn (prompts go first); ``done(z)`` is
        called for each one found or put in the cache. Returns how many it encoded."""
        model = self.model_for()
        segmenter = CachingSegmenter(self.segmenters.get(model), self.cache, model)
        images = self._images(plane)
        if plane == "z":
            with self.turns.background():
                self._warm(min(max(int(focus()), 0), self.depth - 1))
        sessions = segmenter.slice_encoders() or [None]
        said = done or (lambda z: None)
        todo = set(range(len(images)))
        encoded = 0
        with ThreadPoolExecutor(len(sessions)) as pool:
            while todo and not stop.is_set():
                batch = self._uncached(segmenter, images, todo, focus(), len(sessions), said)
                if not batch:
                    continue
                full = not self.cache.room(len(batch))
                if full and (self.cache.store is None or plane != "z"):
                    break  # without a disk store, what it encoded is never pushed out; a view's cuts (encoded
                    # after a box drawn there) are never written to disk, where they would push out slices
                # with one, the slices beyond the memory cache go to disk only, never pushing out the nearer ones
                encode = segmenter.put_away if full else segmenter.encode
                with self.turns.background() as turn:
                    if stop.is_set():
                        break
                    runs = [pool.submit(encode, images[z], session, turn.options())
                            for z, session in zip(batch, sessions)]
                    failed = [run.exception() for run in runs]  # each ended: encoded, or stopped by a prompt
                if any(failed) and not turn.stopped:
                    raise next(e for e in failed if e)
                for z, problem in zip(batch, failed):
                    if problem is not None:
                        todo.add(z)  # stopped for a prompt: encoded in a later turn
                    else:
                        encoded += 1
                        said(z)
        return encoded

    def _uncached(self, segmenter: CachingSegmenter, images, todo: set, at: int, size: int, said) -> list[int]:
        """Up to ``size`` slices of ``todo`` nearest slice ``at`` whose embeddings are not cached, taken off
        ``todo``; those found cached on the way are taken off too, and ``said``."""
        batch: list[int] = []
        while todo and len(batch) < size:
            z = min(todo, key=lambda k: (abs(k - at), k))
            todo.discard(z)
            if segmenter.cached(images[z]):
                said(z)
            else:
                batch.append(z)
        return batch

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
            self.apply(changed, np.where(mask.ravel()[changed], label, 0))
            return label

    def brush(self, z: int, points, radius: int, label: int | None, plane: str = "z", within=None,
              sphere: bool = False) -> int:
        """A brush stroke on slice ``z`` (2D: the image; or the cut ``z`` of ``plane``): the disks of ``radius``
        pixels along ``points`` (x, y) become object ``label`` (a new one when None; added to it when it exists),
        or with ``label`` 0 (the eraser) background; ``within``, ``sphere``: litemedsam.serve.tools.stroke (a
        threshold brush, a 3D ball). Returns the label painted."""
        with self.lock:
            label = self.next_label() if label is None else int(label)
            if not 0 <= label <= 65535:
                raise CaseError(f"label {label} is not 0-65535")
            where = tools.stroke(self.labels, self.case.image, self.case.dim, z, points, radius, label, plane,
                                 within, sphere, formats.spacing(self.case))
            self.apply(where, np.full(len(where), label, np.uint16))
            return label

    def interpolate(self, label: int, plane: str = "z") -> int:
        """Fill the cuts of ``plane`` between those where object ``label`` was drawn (Slicer's "fill between
        slices": litemedsam.serve.tools.between). Only empty cuts change; one undoable edit. Returns the voxels
        added."""
        if self.case.dim != "3D":
            raise CaseError("a 2D image has no slices to fill between")
        with self.lock:
            where = tools.between(self.labels, label, plane)
            self.apply(where, np.full(len(where), label, np.uint16))
            return len(where) - self.change["held"]

    def flat(self, box, z: int = 0, plane: str = "z") -> bool:
        """Whether the image under ``box`` (x0, y0, x1, y1 on slice or cut ``z`` of ``plane``) is one grey: its 1st
        and 99th percentiles under ``FLAT`` levels apart (a box drawn in air, or on a black border)."""
        cut = self.image_slice(z, plane)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        window = cut[max(0, min(y0, y1)):max(y0, y1) + 1, max(0, min(x0, x1)):max(x0, x1) + 1]
        low, high = np.percentile(window, [1, 99]) if window.size else (0, 0)
        return bool(high - low < FLAT)

    def click(self, label: int | None, kind: str, at: tuple, kept=(), z_range=None, reporter=None,
              region: bool = False, reach_back: bool = True) -> int:
        """A foreground (``kind`` "fg") or background ("bg") click on voxel ``at`` (z, y, x; 2D: (0, y, x)) for
        object ``label``, applied as ``infer`` applies the clicks of a case (litemedsam.methods.refine): the
        object grows or shrinks around the click (and along the model's contour through it). A foreground click
        for an object that has no voxel yet (or ``label`` None: a new one), or with ``region`` (the page's
        Shift-click), adds the region the model finds there (``refine.seed``; in a volume propagated over
        ``z_range``, first and last slice, default all). ``change["far"]``: how far (mm) a foreground click was
        from its object when farther than ``FAR_CLICK`` (its ball reaches back to the object); with ``reach_back``
        False such a click changes nothing and ``change`` says ``"asked"``: the page asks whether to reach back or
        add the region instead. A new object's click on another object's voxel is refused (it would take that
        object), but inside the object "Paint over" names. The voxels of the earlier clicks ``kept`` ((z, y, x)
        each) keep their label, as infer keeps a case's. ``reporter(done, total)`` hears the slices done (it may
        raise to stop the click, up to the edit itself: nothing changes). Returns the label."""
        with self.turns, progress.reporting(reporter):
            return self._click(label, kind, at, kept, z_range, region, reach_back)

    def _click(self, label, kind: str, at: tuple, kept, z_range, region: bool, reach_back: bool) -> int:
        model = self.model_for()
        segmenter = CachingSegmenter(self.segmenters.get(model), self.cache, model)
        spacing = formats.spacing(self.case)
        known = label is not None and self.counts.get(int(label))
        if kind == "bg" and not known:
            raise CaseError("a background click needs an object to take the voxel from: select one")
        under = int(self.labels[at] if self.case.dim == "3D" else self.labels[at[1:]])
        if kind == "fg" and not known and under and not (self.guard.over == "inside" and self.guard.inside == under):
            raise CaseError(f"the click is on label {under}: select it to grow or shrink it; for a new object "
                            f"within it, set \"Paint over\" to inside label {under}")
        far = refine.gap(self.labels, int(label), at, spacing) if kind == "fg" and known else 0.0
        if far > FAR_CLICK and not region and not reach_back:
            with self.lock:
                self.change = {"took": {}, "held": 0, "voxels": 0, "far": round(min(far, refine.REACH_MM), 1),
                               "asked": True}
            return int(label)
        seeded = None
        if kind == "fg" and (not known or region):
            empty = self._case_with(np.zeros((0, 4 if self.case.dim == "2D" else 6)))
            seeded = refine.seed(segmenter, empty, {1: at}, z_range) == 1
            # then the click itself, as infer applies it after seeding (where the model found nothing: its ball)
        with self.lock:  # the region and the click one edit, one undo step, stopped whole
            label = self.next_label() if label is None else int(label)
            first, redo = None, list(self.redo_stack)
            if seeded is not None and seeded.any():
                self.apply(np.flatnonzero(seeded & (self.labels != label)), label)
                first = self.undo_stack[-1]
            try:
                reading = Reporting(segmenter)
                found = refine.edit(reading, self.case.image, self.labels, label, kind, at, spacing, kept)
                changed, value = found if found is not None else (np.zeros(0, np.int64), 0)
                progress.report(reading.encoded, 0)  # a cancel that came while the last slice was read
            except BaseException:
                if first is not None:  # the region taken back: nothing changes, what could be redone still can
                    self._drop(first)
                    self.redo_stack[:] = redo
                raise
            seeding = self.change
            self.apply(changed, np.full(len(changed), value, np.uint16))  # one undo step, even changing nothing
            if first is not None:
                self._join(first, seeding)
            if far > FAR_CLICK and not region:
                self.change = {**self.change, "far": round(min(far, refine.REACH_MM), 1)}
        return label

    def tidy(self, z: int, label: int, action: str, plane: str = "z") -> int:
        """On slice ``z`` (or the cut ``z`` of ``plane``), object ``label``: ``fill`` its holes or remove its
        ``islands`` (litemedsam.serve.tools.tidied). One undoable edit; returns the pixels changed."""
        with self.lock:
            where, value = tools.tidied(self.labels, self.case.dim, z, label, action, plane)
            self.apply(where, np.full(len(where), value, np.uint16))
            return len(where)

    @property
    def given_modality(self) -> str | None:
        """The modality the case was given (routes a cut segmented as a 2D image)."""
        return self.case.modality


class _Slices:
    """A scene's slices (its image, in 2D) by index, as Cuts gives cuts."""

    def __init__(self, scene: Scene):
        self.scene = scene

    def __len__(self) -> int:
        return self.scene.depth

    def __getitem__(self, index: int) -> np.ndarray:
        return self.scene.image_slice(index)


class Cuts:
    """The cuts of a volume across its slices (``plane`` "y": rows, "x": columns) as a volume of its own, each
    cut resampled to square pixels when the spacing is not (a cut across 5 mm slices of 0.8 mm pixels would
    reach the model squashed): ``shape`` and ``cuts[i]``, made when asked, as litemedsam.methods.pipeline reads
    a volume. ``back`` puts a mask of it back on the volume's voxels."""

    def __init__(self, volume: np.ndarray, plane: str, spacing=None):
        self.volume, self.plane = volume, plane
        rows, cols = formats.PLANES[plane]
        h, w = volume.shape[rows], volume.shape[cols]
        mm = spacing or (1.0, 1.0, 1.0)
        self.sy, self.sx = mm[rows] / min(mm[rows], mm[cols]), mm[cols] / min(mm[rows], mm[cols])
        self.hw = (h, w)
        self.size = (max(1, round(w * self.sx)), max(1, round(h * self.sy)))  # OpenCV's (width, height)
        self.shape = (volume.shape["zyx".index(plane)], self.size[1], self.size[0])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        cut = np.ascontiguousarray(formats.plane_image(self.volume, self.plane, int(index)))
        return cut if cut.shape == self.shape[1:] else cv2.resize(cut, self.size, interpolation=cv2.INTER_LINEAR)

    def back(self, mask: np.ndarray) -> np.ndarray:
        h, w = self.hw
        if mask.shape[1:] != (h, w):
            mask = np.stack([cv2.resize(m.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) for m in mask]) > 0
        return np.moveaxis(mask, 0, "zyx".index(self.plane))
