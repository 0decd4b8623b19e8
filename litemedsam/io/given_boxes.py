"""Boxes for cases whose files carry none (NIfTI, PNG, ...): from the command line (``--box``), from a table
(``--boxes FILE``, JSON or CSV, one row per box, optionally per file) or from a label image of the same
geometry (``--boxes-from-labels``: the tight box of each label value; label k of the output = value k).

Boxes are voxel (pixel) indices, inclusive: 2D ``x0,y0,x1,y1`` (x = column, y = row), 3D
``x0,y0,z0,x1,y1,z1`` (x, y, z = the file's first, second and third voxel axes, z the slice axis).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from litemedsam.core.errors import CaseError, UsageError, shown
from litemedsam.core.limits import MAX_OBJECTS

MAX_TABLE_BYTES = 16 << 20
COLUMNS = {4: ["x0", "y0", "x1", "y1"], 6: ["x0", "y0", "z0", "x1", "y1", "z1"]}


def parse_box(text: str, where: str = "--box") -> list:
    """'x0,y0,x1,y1' or 'x0,y0,z0,x1,y1,z1' -> numbers; UsageError otherwise."""
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) not in (4, 6) or not all(np.isfinite(values)):
        raise UsageError(f"{where} {shown(text)!r}: 4 numbers x0,y0,x1,y1 (2D) or 6 x0,y0,z0,x1,y1,z1 (3D) expected")
    return values


def read_boxes_table(path: Path) -> dict:
    """A boxes file -> {file name or "*": [box, ...]}. JSON: a list of rows, each a list of 4 or 6 numbers or
    an object {"box": [...], "file": NAME}; CSV: columns x0,y0[,z0],x1,y1[,z1] and optionally file."""
    source = shown(path)
    try:
        if not path.is_file():
            raise UsageError(f"--boxes {source}: not a regular file")
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise UsageError(f"--boxes {source}: larger than {MAX_TABLE_BYTES} bytes; not a table of boxes")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise UsageError(f"--boxes {source}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise UsageError(f"--boxes {source}: not a text file (UTF-8)") from None
    rows = _json_rows(text, source) if path.suffix.lower() == ".json" else _csv_rows(text, source)
    table: dict = {}
    for name, box in rows:
        table.setdefault(name, []).append(box)
    return table


def _json_rows(text: str, source: str) -> list:
    """(file name or "*", box) of each row of a JSON table of boxes."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--boxes {source}: not valid JSON ({e})") from None
    except RecursionError:
        raise UsageError(f"--boxes {source}: JSON nested too deeply for a table of boxes") from None
    if not isinstance(data, list):
        raise UsageError(f"--boxes {source}: a JSON list of rows expected")
    rows = []
    for n, row in enumerate(data, 1):
        box, name = (row.get("box"), row.get("file", "*")) if isinstance(row, dict) else (row, "*")
        if not isinstance(box, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            raise UsageError(f"--boxes {source}: row {n} must be a list of numbers or "
                             f"{{\"box\": [...], \"file\": ...}}")
        rows.append((str(name), parse_box(",".join(map(str, box)), f"--boxes {source}: row {n}")))
    return rows


def _csv_rows(text: str, source: str) -> list:
    """(file name or "*", box) of each line of a CSV table of boxes."""
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in reader.fieldnames or []]
    width = 6 if "z0" in fields else 4
    missing = [c for c in COLUMNS[width] if c not in fields]
    if missing:
        raise UsageError(f"--boxes {source}: CSV columns {','.join(COLUMNS[width])} (and optionally file) "
                         f"expected; missing {','.join(missing)}")
    rows = []
    for n, row in enumerate(reader, 2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        rows.append((row.get("file") or "*",
                     parse_box(",".join(row[c] for c in COLUMNS[width]), f"--boxes {source}: line {n}")))
    return rows


LABEL_CHUNK = 1 << 22  # voxels of a label image looked at in one step (bounds the index arrays: ~100 MB)


def boxes_of_labels(labels: np.ndarray) -> tuple[np.ndarray, list]:
    """A label image -> (N, 4 or 6) tight boxes of values 1..N (N the largest value) and the values absent; one
    pass over the image for all values (sorting each chunk's labelled voxels by value), whatever N is."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) and not (np.issubdtype(labels.dtype, np.floating)
                                                           and np.array_equal(labels, np.rint(labels))):
        raise CaseError(f"the label image holds {labels.dtype} values that are not whole numbers")
    top = int(labels.max()) if labels.size else 0
    if top > MAX_OBJECTS or (labels.size and labels.min() < 0):
        raise CaseError(f"the label image's values must be 0-{MAX_OBJECTS}, got {labels.min()}-{labels.max()}")
    lo = np.full((top + 1, labels.ndim), np.iinfo(np.int64).max)
    hi = np.full((top + 1, labels.ndim), -1)
    flat = labels.reshape(-1)
    for start in range(0, flat.size, LABEL_CHUNK):
        part = flat[start:start + LABEL_CHUNK]
        where = np.flatnonzero(part)
        if where.size == 0:
            continue
        values = part[where].astype(np.int64)
        order = np.argsort(values, kind="stable")
        values, where = values[order], where[order] + start
        present, first = np.unique(values, return_index=True)
        for axis, coords in enumerate(np.unravel_index(where, labels.shape)):
            lo[present, axis] = np.minimum(lo[present, axis], np.minimum.reduceat(coords, first))
            hi[present, axis] = np.maximum(hi[present, axis], np.maximum.reduceat(coords, first))
    found = hi[1:, 0] >= 0
    boxes = np.zeros((top, 2 * labels.ndim), np.float64)
    boxes[found] = np.concatenate([lo[1:][found][:, ::-1], hi[1:][found][:, ::-1]], axis=1)  # (z, y, x) -> x, y, z
    return boxes, [int(v) for v in np.flatnonzero(~found) + 1]


@dataclass
class CaseInputs:
    """What the command line gives for the cases: boxes for files that carry none, and intensity options."""

    boxes: list = field(default_factory=list)  # --box, for every such case
    table: dict | None = None  # --boxes FILE
    table_name: str = ""
    labels: Path | None = None  # --boxes-from-labels: a label file, or a folder of them named as the cases
    modality: str | None = None  # --modality
    window: tuple | None = None  # --window LEVEL,WIDTH
    lines: list = field(default_factory=list)  # --line x0,y0,x1,y1,z: RECIST lines for every volume that carries none
    recist: Path | None = None  # --recist: a label image of lines, or a folder of them named as the cases

    def recist_for(self, path: Path) -> Path | None:
        """The label image of lines given for ``path`` (--recist: the file, or the one named as the case in the
        folder), or None."""
        if self.recist is None:
            return None
        return self.recist / path.name if self.recist.is_dir() else self.recist

    def for_case(self, path: Path) -> list | None:
        """The boxes given for ``path`` (--box or --boxes), or None (labels are read by the case's format)."""
        if self.boxes:
            return list(self.boxes)
        if self.table is not None:
            found = self.table.get(path.name, []) + self.table.get("*", [])
            if not found:
                raise CaseError(f"{self.table_name} has no row for it (nor rows without a file)")
            return found
        return None

    def labels_for(self, path: Path) -> Path | None:
        """The label image given for ``path`` (--boxes-from-labels: the file, or the one named as the case in
        the folder), or None; litemedsam.io.formats reads it."""
        if self.labels is None:
            return None
        return self.labels / path.name if self.labels.is_dir() else self.labels


def boxes_of_label_image(labels: np.ndarray, shape: tuple, name: str) -> tuple[np.ndarray, list]:
    """(boxes, label values absent) of the label image ``name`` given for a case whose image has ``shape``;
    CaseError unless it has that shape and some label."""
    if labels.shape != tuple(shape):
        raise CaseError(f"its label image {shown(name)} has shape {labels.shape}, the image {tuple(shape)}")
    boxes, absent = boxes_of_labels(labels)
    if not len(boxes):
        raise CaseError(f"its label image {shown(name)} holds no label (every voxel is 0): no boxes")
    return boxes, absent


def no_boxes_message() -> str:
    return ("it holds no boxes: give them with --box x0,y0[,z0],x1,y1[,z1] (repeatable), --boxes FILE (JSON/CSV) or "
            "--boxes-from-labels LABELS, or use a box-free mode (--prompt self|none, --reference)")
