"""The browser app's open case (what ``litemedsam serve app`` drives; no web code here): a Document is a Scene
(litemedsam.serve.scene, the interactive core) of a case read by litemedsam.io.formats, saved in the input's
format, with every unsaved edit kept in a work file beside the output so that none is lost to a reload, a closed
tab or a restart, and its objects' names.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from litemedsam.io import formats
from litemedsam.core.errors import CaseError, LitemedsamError, shown
from litemedsam.io.given_boxes import CaseInputs
from litemedsam.io.intensity import CT_WINDOW, modality_of
from litemedsam.core.measure import measurements_file, to_csv
from litemedsam.core.safeio import read_small, write_bytes, write_text
from litemedsam.serve.encoding import EmbeddingCache
from litemedsam.serve.scene import Scene

WORK_FOLDER = ".litemedsam-work"  # beside the outputs: each open case's unsaved edits, kept after every edit


class Document(Scene):
    """One open case of the browser app: a Scene of a case read from a file, saved to ``target`` in the input's
    format, its unsaved edits kept after each one in a work file beside the output (``restore`` takes them back),
    and its objects' names. ``inputs`` (litemedsam.io.given_boxes.CaseInputs) are the intensity options the image
    was read with.
    """

    def __init__(self, case, target: Path, prompting, segmenters, cache: EmbeddingCache, labels=None, inputs=None,
                 unsaved: bool = False, names: dict | None = None, turns=None):
        if labels is not None and labels.shape != case.label_shape:
            raise CaseError(f"its segmentation {shown(target.name)} has shape {labels.shape}, the image "
                            f"{case.label_shape}")
        if labels is not None and (labels.min(initial=0) < 0 or labels.max(initial=0) > 65535):
            raise CaseError(f"its segmentation {shown(target.name)} holds labels outside 0-65535")
        super().__init__(case, prompting, segmenters, cache, labels, turns, edited=self._write_edit,
                         writable=self._refuse_if_readonly)
        self.target, self.inputs = target, inputs or CaseInputs()
        self.names = dict(names or {})  # label -> {"name": ..., "color": [r, g, b] or None}: what the user called it
        self.table: dict = {}  # the project's label table (serve --labels): names and colours by label, where unnamed
        self.unsaved = unsaved  # edits not in the output file yet (they are in the work file)
        self.confidence: dict = {}  # label -> the confidence of the box that made it (none for other edits)
        self.autosave_problem = ""  # why the last edit could not be kept in the work file, if it could not
        self.behind = False  # edits in memory that the work file lacks (a write failed): never closed silently
        self.names_behind = False  # names in memory that the work folder lacks (a write failed): written again
        self.readonly = ""  # why edits are refused (its work folder cannot be read), if they are
        self.notice = ""  # what the page should say once opened (a damaged work file moved aside)
        self._values: np.ndarray | None = None  # the file's own voxel values, read by value_at when first asked
        self.measure_problem = ""  # why the last save wrote no measurements, if it wrote none

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
    def given_modality(self) -> str | None:
        return self.inputs.modality or self.case.modality

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

    def value_at(self, z: int, y: int, x: int) -> float | None:
        """The file's own value at voxel (z, y, x) (Hounsfield units of a CT) for formats that keep their
        intensities (NIfTI, NRRD/MHA, DICOM; read once, on the first call), None for the others."""
        values = self.file_values()
        return None if values is None else float(values[z, y, x])

    def file_values(self) -> np.ndarray | None:
        """The file's own voxel values (read once, when first asked), None for a format without them."""
        if not self.raw or self.case.dim != "3D":
            return None
        with self.lock:
            if self._values is None:
                values = formats.read_values(self.case.path)
                if values.shape != self.labels.shape:
                    raise CaseError("its file changed since it was opened; reopen it")
                self._values = values
        return self._values

    @property
    def work_file(self) -> Path:
        """Where the unsaved edits are kept: ``.litemedsam-work/<output name>.edits`` in the output's folder."""
        return work_file(self.target)

    def _write_edit(self, where: np.ndarray, values) -> None:
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
        self._keep_names()  # names a full disk held back are written with the next edit

    def _keep_names(self, changed: bool = False) -> None:
        """Write the objects' names to the work folder when ``changed`` or when an earlier write failed
        (``names_behind``); a failure stays said (``autosave_problem``) until a write succeeds."""
        if not (changed or self.names_behind):
            return
        try:
            private_folder(self.work_file.parent)
            write_names(names_work_file(self.target), self.names)
            self.names_behind = False
        except OSError as e:
            self.names_behind = True
            problem = f"the names could not be kept ({shown(e)}); save"
            self.autosave_problem = f"{self.autosave_problem}; {problem}" if self.autosave_problem else problem

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
            self.readonly = (f"its work folder cannot be read ({shown(e.strerror or e)}): opened read-only, as last "
                             f"saved")
            return
        if data is None:
            return
        count, damage = replay_edits(data, self.labels)
        self.count()
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

    def _refuse_if_readonly(self) -> None:
        """Before an edit: CaseError when this case's edits are refused (its work folder cannot be read)."""
        if self.readonly:
            raise CaseError(f"this case is read-only: {self.readonly}")

    def name(self, label: int, name: str | None = None, color=None) -> dict:
        """Name object ``label`` and/or give it a colour ([r, g, b]); kept with the unsaved edits (the work
        folder) until Save writes them beside the output (``<output>.labels.json``). CaseError for a bad one."""
        with self.lock:
            self.writable()
            entry = dict(self.names.get(int(label), {"name": "", "color": None}))
            if name is not None:
                entry["name"] = name
            if color is not None:
                entry["color"] = color
            entry = checked_name(label, entry)
            self.names[int(label)] = entry
            self.unsaved = True
            self.autosave_problem = "" if not self.behind else self.autosave_problem
            self._keep_names(changed=True)
            return entry

    def discard(self) -> None:
        """Drop the unsaved edits: the label map as the output file holds it (or empty), no work file."""
        with self.lock:
            self.writable()
            labels = read_output(self.case, self.target)
            self.labels[...] = 0 if labels is None else labels
            self.count()
            self.undo_stack.clear()
            self.redo_stack.clear()
            self.work_file.unlink(missing_ok=True)
            names_work_file(self.target).unlink(missing_ok=True)
            self.names = read_names(names_file(self.target))
            self.unsaved, self.autosave_problem, self.behind, self.names_behind = False, "", False, False

    def entry(self, label: int) -> dict:
        """Object ``label``'s name and colour: the user's, else the project's label table's (``table``), each."""
        own, given = self.names.get(label, {}), self.table.get(label, {})
        return {"name": own.get("name") or given.get("name", ""), "color": own.get("color") or given.get("color")}

    def measure(self, labels: np.ndarray | None = None) -> list[dict]:
        """Each object's measurements (litemedsam.core.measure) of ``labels`` (default: the labels now): over the
        file's own values (HU of a CT) where the format keeps them, else the image as the model sees it (0-255)."""
        if labels is None:
            with self.lock:
                labels = self.labels.copy()
        names = {label: self.entry(label) for label in np.unique(labels).tolist()}
        return formats.measure_case(self.case, labels, self.file_values(), names)

    def save(self) -> Path:
        """Write the label map in the input's format (its output name) and return its path; then the measurements
        of the labels saved beside it (``measurements_file``). When those cannot be made (the input's file gone
        since it was opened), the output is saved all the same, no older measurements stay beside it and
        ``measure_problem`` says why."""
        with self.lock:
            self.writable()
            labels = self.labels if self.labels.max(initial=0) > 255 else self.labels.astype(np.uint8)
            formats.write(self.case, labels, self.target)
            names = {label: self.entry(label) for label in sorted(set(self.names) | {
                label for label, _ in self.objects() if label in self.table})}
            if names or names_file(self.target).exists():
                write_names(names_file(self.target), names)
            self.work_file.unlink(missing_ok=True)
            names_work_file(self.target).unlink(missing_ok=True)
            self.unsaved, self.autosave_problem, self.behind, self.names_behind = False, "", False, False
            saved = self.labels.copy()
        try:
            write_text(measurements_file(self.target), to_csv(self.measure(saved)))
            self.measure_problem = ""
        except (OSError, LitemedsamError, MemoryError) as e:
            measurements_file(self.target).unlink(missing_ok=True)
            self.measure_problem = f"its measurements could not be written ({shown(e)})"
        return self.target


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


def read_label_table(path: Path) -> dict:
    """A project's label table (``serve app --labels FILE``): the names and colours objects take by their label, in
    the form Save writes beside an output (``{"labels": {"1": {"name": "liver", "color": [r, g, b]}}}``), so a
    saved ``.labels.json`` serves as one. CaseError saying what is wrong with it."""
    try:
        raw = read_small(path, 1 << 20, "")
    except ValueError as e:
        raise CaseError(str(e).lstrip(": ")) from None  # a FIFO, a device, a folder, past 1 MiB: said
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError too
        raise CaseError("is not JSON") from None
    if not (isinstance(data, dict) and isinstance(data.get("labels"), dict)):
        raise CaseError('is not a label table: {"labels": {"1": {"name": "liver", "color": [r, g, b]}, ...}}')
    table = {}
    for key, entry in data["labels"].items():
        label = int(key) if key.isascii() and key.isdigit() else key
        table[label] = checked_name(label, entry)  # CaseError: "label x is not 1-65535", ...
    return table


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
    labels = data.get("labels") if isinstance(data, dict) else None
    found = {}
    for key, entry in (labels if isinstance(labels, dict) else {}).items():
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
              target: Path | None = None, turns=None, table: dict | None = None) -> Document:
    """A Document of the case at ``path``, saved to ``target`` (default: its output name in ``output_dir``), with
    its labels from the output file when ``infer`` (or a save) wrote one, and the unsaved edits and names a work
    file holds (an earlier page, or server, left them: ``Document.restore``); ``table``: the project's label table
    (``read_label_table``)."""
    case = formats.read(path, inputs, require_boxes=False)
    target = target or output_dir / formats.output_name(path)
    doc = Document(case, target, prompting, segmenters, cache, read_output(case, target), inputs,
                   names=read_names(names_file(target)), turns=turns)
    doc.table = dict(table or {})
    doc.reserved = frozenset(doc.table)  # a table's label is a new object's only when picked: its name is another's
    doc.restore()
    return doc

