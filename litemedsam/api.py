"""The Python API: what ``litemedsam infer`` does to one case, for arrays, images and files in a notebook or a
program (TotalSegmentator's ``python_api`` is the model: a path or an image in, the same type out).

    import litemedsam
    labels = litemedsam.segment(image, boxes)                  # an array (2D or 3D) in, its label map out
    labels_nii = litemedsam.segment(nibabel_image, boxes)       # a nibabel image in, one out: same affine and header
    labels = litemedsam.segment("ct.nii.gz", boxes, output="ct_labels.nii.gz")  # any case file infer reads
    predictor = litemedsam.Predictor()                          # segment-anything's SamPredictor
    predictor.set_image(image2d)                                # encoded once ...
    masks, scores, logits = predictor.predict(boxes)            # ... for boxes, points and earlier logits

``segment`` is `infer`'s per-case code: the same reading of files, intensity rule, router decision (model, 3D
strategy, mask strategies; ``exact`` as `--exact`) and masks. Problems raise
``litemedsam.core.errors.LitemedsamError`` (a ``CaseError`` for bad input, a ``ModelError`` for a model that is not
built) with the message `infer` prints; a case's warnings (a box clipped, HU data taken as CT) are issued with
``warnings.warn``. Boxes and points are in image pixels (voxel indices), inclusive.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from litemedsam.core import confidence
from litemedsam.core.errors import CaseError, shown
from litemedsam.core.limits import MAX_OBJECTS, MAX_POINTS, POINT_BYTES, available_memory, check_size, human
from litemedsam.io import formats
from litemedsam.io.cases import clip_boxes
from litemedsam.io.formats import nifti
from litemedsam.io.given_boxes import CaseInputs
from litemedsam.io.intensity import case_of_voxels, checked_window, prepare
from litemedsam.io.lines import given_lines
from litemedsam.methods.prompting import BoxPrompting
from litemedsam.methods.router import Router
from litemedsam.models.segmenter import Embedding, make_segmenter
from litemedsam.models.session import resolve_threads

_SEGMENTERS: dict = {}
_LOCK = threading.Lock()


def _segmenter(model: str, threads: int | None):
    """One runtime object per (model, threads) per process: sessions are made once. ``threads`` is checked as
    `infer --threads` checks it (an integer 1-1024; more than the CPUs is capped to them)."""
    threads = None if threads is None else resolve_threads(threads, "threads=")[0]
    with _LOCK:
        if (model, threads) not in _SEGMENTERS:
            _SEGMENTERS[model, threads] = make_segmenter(model, threads=threads)
        return _SEGMENTERS[model, threads]


@lru_cache(maxsize=1)
def _shipped_router() -> Router:
    return Router.load()


def _checked_window(modality: str | None, window, router: Router | None = None) -> tuple | None:
    """``window`` as (level, width), ``modality`` and it checked as `infer` checks --modality and --window
    (against ``router``, default the shipped one)."""
    (router or _shipped_router()).check_modality(modality, "modality=")
    if window is None:
        return None
    given = tuple(window) if isinstance(window, (tuple, list, np.ndarray)) and len(window) == 2 else (0, 0)
    return checked_window(given[0], given[1], option=f"window={str(window)[:40]}")


def _uint8(image, modality: str | None, window: tuple | None, router: Router | None = None) -> tuple:
    """(uint8 image, modality the data say, warnings): `infer`'s intensity rule for any real dtype, the options
    checked (``_checked_window``)."""
    window = _checked_window(modality, window, router)
    image = np.asarray(image)
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * np.uint8(255)
    return prepare(image, "", modality, window)


def segment(image, boxes=None, modality: str | None = None, window: tuple | None = None, exact: bool = False,
            model: str | None = None, starts=None, threads: int | None = None, router: Router | None = None,
            scores: bool = False, output=None, lines=None):
    """The label map of ``image`` for ``boxes``, label k for the k-th box (uint8; uint16 above 255 boxes).

    image: an array, 2D (H, W) or (H, W, 3), or 3D (D, H, W), any real dtype (not uint8: the modality's intensity
    rule, CT window or 0.5-99.5 percentiles, or ``window=(level, width)``): its label map as an array. A nibabel
    NIfTI image: its label map as a nibabel image of the same class, voxel shape, affine and header (boxes in
    voxel indices x = i, y = j, z = k, as for NIfTI files). A path (str or Path) of any case `infer` reads (NIfTI,
    NRRD/MHA, a DICOM series folder, PNG/JPEG/TIFF, the challenge's .npz with its own boxes and clicks): its label
    map as an array, also written to ``output`` (a path named as `infer` names it, e.g. ``.png`` for a JPEG) in
    the input's format and geometry.
    boxes: (N, 4) ``x0, y0, x1, y1`` for a 2D image, (N, 6) ``x0, y0, z0, x1, y1, z1`` for a volume. modality:
    "CT", "MR", ... (routes the case and picks its intensity rule; None: from a file's name or the data, HU ->
    CT). starts: a volume's start slice per box (default: the middle of its z-range). model: a registered model
    instead of the router's choice; exact: the reference's computation (`infer --exact`). scores: also return each
    object's confidence, label -> the decoder's mean predicted IoU of its masks (as run.json records it).
    lines: instead of boxes, a volume's RECIST lines, (N, 5) ``x0, y0, x1, y1, z`` (a lesion's longest diameter
    drawn on slice z): label k is lesion k in 3D (litemedsam.methods.recist).
    """
    if boxes is not None and lines is not None:
        raise CaseError("give boxes or lines, not both")
    if isinstance(image, (str, Path)):
        return _segment_file(_path(image, "image"), boxes, output, modality, window, exact, model, threads, router,
                             scores, lines)
    if output is not None:
        raise CaseError("output= is for a path in: an array or image in gives its label map back")
    placed = _nifti_image(image)
    geometry = None
    if placed is not None:
        image, geometry = nifti.voxels(placed, nifti.checked_shape(placed))
    boxes = _boxes(boxes if lines is None else np.zeros((0, 6)))
    window = _checked_window(modality, window, router)
    data = np.asarray(image)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8) * np.uint8(255)
    case = case_of_voxels(Path("array"), data, boxes, "2D" if boxes.shape[1] == 4 else "3D", modality, window,
                          starts=starts, geometry=geometry)
    if lines is not None:
        if data.ndim != 3:
            raise CaseError(f"lines are for a volume (D, H, W), got shape {data.shape}")
        case = dataclasses.replace(case, lines=given_lines(lines, data.shape))
    for note in case.warnings:
        warnings.warn(note, stacklevel=2)
    labels, confidences = _run(case, case.modality, exact, model, threads, router)  # the caller's, or the data's
    if geometry is not None:  # as the file infer writes would read back (its affine from the header kept)
        made = nifti.labels_image(labels, geometry)
        labels = type(made).from_bytes(made.to_bytes())
    return (labels, confidences) if scores else labels


def _boxes(boxes) -> np.ndarray:
    """``boxes`` as an (N, 4) or (N, 6) array (one box may be given flat); CaseError otherwise."""
    boxes = np.asarray(boxes if boxes is not None else np.zeros((0, 4)))
    if boxes.ndim == 1 and boxes.size in (4, 6):
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 6):
        raise CaseError(f"boxes must be an (N, 4) array for a 2D image or (N, 6) for a volume, got shape {boxes.shape}")
    return boxes


def _nifti_image(image):
    """``image`` when it is a nibabel image (nibabel imported only if the caller has it loaded), else None."""
    nib = sys.modules.get("nibabel")
    return image if nib is not None and isinstance(image, nib.spatialimages.SpatialImage) else None


def _segment_file(path: Path, boxes, output, modality, window, exact, model, threads, router, scores, lines=None):
    """``segment`` of a case file, read and written as `infer` reads and writes it."""
    window = _checked_window(modality, window, router)
    given = [] if boxes is None else _boxes(boxes).tolist()
    lined = [] if lines is None else np.asarray(lines, np.float64).reshape(-1, 5).tolist()
    target = None if output is None else _path(output, "output")
    if target is not None:
        formats.check_target(path, target)  # before the work: never the input file (or a link to it)
    if target is not None and formats.suffix(target.name) != formats.suffix(formats.output_name(path)):
        raise CaseError(f"output= {shown(target.name)!r}: the labels of {shown(path.name)!r} are written as "
                        f"{formats.suffix(formats.output_name(path))} (as infer names them)")
    try:
        case = formats.read(path, CaseInputs(boxes=given, modality=modality, window=window, lines=lined))
    except CaseError as e:
        raise CaseError(f"{shown(path.name)}: {e}") from None
    for note in case.warnings:
        warnings.warn(f"{shown(path.name)}: {note}", stacklevel=3)
    labels, confidences = _run(case, modality or case.modality, exact, model, threads, router)
    if target is not None:
        formats.write(case, labels, target)
    return (labels, confidences) if scores else labels


def _path(given, what: str) -> Path:
    """``given`` (a str or Path) as a Path; CaseError for one no file can have (a NUL character)."""
    if not isinstance(given, (str, Path)) or "\0" in str(given):
        raise CaseError(f"{what}= {shown(str(given)[:80])!r}: not a path (a NUL character, or not a str or Path)")
    return Path(given)


def _run(case, modality, exact, model, threads, router) -> tuple:
    """(label map, confidence per label) of a case, as `infer` segments it."""
    prompting = BoxPrompting(router or _shipped_router(), model, modality, exact)
    plan = prompting.choose(case)
    with confidence.collecting() as noted:
        labels = prompting.segment(_segmenter(plan.model, threads), case, plan)
    return labels, confidence.summary(noted)


class Predictor:
    """segment-anything's ``SamPredictor``: ``set_image`` encodes a 2D image once, ``predict`` decodes any number
    of objects against it, each from a box, points, an earlier mask's logits or all three (the router's mask
    strategies do not apply: these are the model's own masks; a box alone gives `infer --exact`'s)."""

    def __init__(self, model: str = "litemedsam", threads: int | None = None):
        self.segmenter = _segmenter(model, threads)
        self.embedding: Embedding | None = None
        self.shape: tuple | None = None

    def set_image(self, image, modality: str | None = None, window: tuple | None = None) -> None:
        """Encode a 2D image, (H, W) or (H, W, 3), any real dtype (see ``segment``)."""
        data, _, notes = _uint8(image, modality, window)
        if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] != 3) or min(data.shape[:2]) < 1:
            raise CaseError(f"a 2D image is (H, W) or (H, W, 3), got shape {data.shape}")
        for note in notes:
            warnings.warn(note, stacklevel=2)
        self.embedding = self.segmenter.encode(data)
        self.shape = data.shape[:2]

    def predict(self, boxes=None, points=None, point_labels=None, mask_input=None) -> tuple:
        """Masks of N objects -> ((N, H, W) bool masks, (N,) scores: the decoder's predicted IoU of each mask, its
        confidence, (N, L, L) float32 low-res logits: give them back as ``mask_input`` to refine those masks).

        boxes: (N, 4) ``x0, y0, x1, y1``, clipped to the image as ``segment`` clips them, with its warnings (a box
        inverted or outside the image is no box). points: (N, P, 2) ``x, y`` with point_labels (N, P): 1 on the
        object, 0 off it. mask_input: (N, L, L) logits of an earlier ``predict``. All in image pixels; one object
        may be given without its N axis. A box alone goes through the box decoder (infer's masks; an object without
        a box gets an empty mask and score 0); points or mask_input through SAM's prompt decoder (LiteMedSAM was
        trained on boxes: points add to a box, alone they find little)."""
        emb, shape = self._encoded()
        frame, (h, w) = emb.frame, shape
        boxes = None if boxes is None else _array(boxes, (4,), "boxes", "(N, 4)")
        points = None if points is None else _array(points, (None, 2), "points", "(N, P, 2)")
        low = frame.logit_size
        mask_input = None if mask_input is None else _array(mask_input, (low, low), "mask_input", f"(N, {low}, {low})")
        given = [a for a in (boxes, points, mask_input) if a is not None]
        if not given:
            raise CaseError("give boxes, points or mask_input")
        n = len(given[0])
        if any(len(a) != n for a in given):
            raise CaseError(f"boxes, points and mask_input must give the same number of objects, got "
                            f"{', '.join(str(len(a)) for a in given)}")
        if n > MAX_OBJECTS:
            raise CaseError(f"{n} objects; a case holds at most {MAX_OBJECTS} (as segment)")
        if n == 0:  # no object: no mask (the decoder is not run on an empty batch)
            return np.zeros((0, h, w), bool), np.zeros(0, np.float32), np.zeros((0, low, low), np.float32)
        check_size(n * h * w, f"{n} masks of {w} x {h} need {n * h * w} bytes", f"{n} masks of {w} x {h}")
        if points is not None:
            _check_points(points)
        has_box = np.zeros(n, bool)
        if boxes is not None:
            boxes, skipped, notes = clip_boxes(boxes, "2D", shape)  # as segment clips them, and warns
            for note in notes:
                warnings.warn(note, stacklevel=2)
            has_box[[i for i in range(n) if i + 1 not in skipped]] = True
        if points is None and mask_input is None:
            return self._boxes(boxes, has_box)
        return self._prompts(boxes, has_box, points, point_labels, mask_input)

    def _encoded(self) -> tuple[Embedding, tuple]:
        """The image's embedding and its (H, W); CaseError before set_image."""
        if self.embedding is None or self.shape is None:
            raise CaseError("no image: call set_image first")
        return self.embedding, self.shape

    def _boxes(self, boxes: np.ndarray, has_box: np.ndarray) -> tuple:
        """Boxes alone, through the box decoder: infer's masks (objects without a box: empty, score 0)."""
        (emb, (h, w)), n = self._encoded(), len(has_box)
        frame = emb.frame
        masks, scores = np.zeros((n, h, w), bool), np.zeros(n, np.float32)
        logits = np.full((n, frame.logit_size, frame.logit_size), -20.0, np.float32)
        if has_box.any():
            logits[has_box], scores[has_box] = self.segmenter.decode(emb, frame.boxes_to_model(boxes[has_box]))
            masks[has_box] = frame.masks(logits[has_box], self.segmenter.upsample)
        return masks, scores, logits

    def _prompts(self, boxes, has_box: np.ndarray, points, point_labels, mask_input) -> tuple:
        """Points, boxes (two corner points labelled 2 and 3) and earlier logits through SAM's prompt decoder;
        prompts padded with label -1 (and, as segment-anything, one padding point where an object has no box)."""
        (emb, (h, w)), n = self._encoded(), len(has_box)
        frame = emb.frame
        count = 0 if points is None else points.shape[1]
        coords = np.zeros((n, count + 2, 2), np.float32)
        labels = np.full((n, count + 2), -1.0, np.float32)
        if points is not None:
            point_labels = np.asarray(point_labels if point_labels is not None else np.ones(points.shape[:2]))
            if point_labels.shape != points.shape[:2] and point_labels.shape == points.shape[1:2] and n == 1:
                point_labels = point_labels[None]
            if point_labels.shape != points.shape[:2] or not np.isin(point_labels, (0, 1)).all():
                raise CaseError(f"point_labels must be (N, P) of 1 (on the object) or 0 (off it), got "
                                f"{point_labels.dtype} {point_labels.shape}")
            outside = ~((points >= 0) & (points <= [w - 1, h - 1])).all(axis=2)
            if outside.any():
                raise CaseError(f"point {points[outside][0].tolist()} is outside the {w} x {h} image")
            coords[:, :count] = frame.points_to_model(points)
            labels[:, :count] = point_labels
        if boxes is not None and has_box.any():
            coords[has_box, count:] = frame.boxes_to_model(boxes[has_box]).reshape(-1, 2, 2)
            labels[has_box, count:] = (2, 3)
        width = count + (2 if has_box.any() else 1)  # no box anywhere: one padding point (label -1) each
        masks, logits, scores = self.segmenter.predict_points(emb, coords[:, :width], labels[:, :width],
                                                              mask_input)
        return masks, scores.astype(np.float32), logits.astype(np.float32)


def _check_points(points: np.ndarray) -> None:
    """CaseError for (N, P, 2) points that are too many per object, or would need more memory than there is."""
    n = len(points)
    if points.shape[1] > MAX_POINTS:
        raise CaseError(f"{points.shape[1]} points per object; at most {MAX_POINTS} are taken at once")
    need = n * (points.shape[1] + 2) * POINT_BYTES
    free = available_memory()
    if free is not None and need > free:
        raise CaseError(f"{n} objects of {points.shape[1]} points need about {human(need)} of memory in the "
                        f"decoder; {human(free)} is available")


def _array(values, tail: tuple, name: str, shape: str) -> np.ndarray:
    """``values`` as a finite float array of N items of shape ``tail`` (None: any size), one item allowed without
    its N axis; CaseError naming ``name`` otherwise."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaseError(f"{name} must be a finite {shape} array of numbers") from None
    if array.ndim == len(tail):
        array = array[None]
    fits = array.ndim == len(tail) + 1 and all(t is None or t == s for t, s in zip(tail, array.shape[1:]))
    if not fits or not np.isfinite(array).all():
        raise CaseError(f"{name} must be a finite {shape} array, got shape {array.shape}")
    return array
