"""The label map of the interactive core: a uint16 map of objects edited as undoable steps (each an editor's:
a browser tab's undo takes back its own), within an overwrite guard (Slicer's and ITK-SNAP's "paint over" and
locks), with each label's voxels counted as it goes. ``edited(where, values)`` hears each change (the app's work
file, the protocol's changed region); ``writable()`` is asked before each (a read-only document refuses)."""
from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from contextvars import ContextVar

import numpy as np

from litemedsam.core.errors import CaseError

MAX_UNDO = 50  # edits that can be undone, at most
MAX_UNDO_BYTES = 256 << 20  # and the memory they may hold (the latest edit is always kept)
EDITOR: ContextVar[str | None] = ContextVar("litemedsam_editor", default=None)  # who makes the edits made in this
# context (a browser tab; None: whoever calls without saying): undo and redo take back one's own edits only


@dataclasses.dataclass(frozen=True)
class Guard:
    """Where an edit may change the label map, as Slicer's and ITK-SNAP's overwrite rules: ``over`` "all" (an
    object drawn over others takes their voxels), "empty" (it takes unlabelled voxels only), "inside" (only the
    voxels of object ``inside``: a lesion drawn within its organ); ``locked`` objects never change, whatever edits
    near them. An object's own voxels and erasing are never held back (but a locked object's)."""

    over: str = "all"
    inside: int | None = None
    locked: frozenset = frozenset()

    OVER = ("all", "empty", "inside")

    def allowed(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """Which of the changes of labels ``old`` to ``new`` (arrays of one length) the rules let through."""
        keep = ~np.isin(old, list(self.locked))
        painting = (new != 0) & (old != new)
        if self.over == "empty":
            keep &= ~painting | (old == 0)
        elif self.over == "inside":
            keep &= ~painting | (old == self.inside)
        return keep


class LabelMap:
    """Labels of ``shape`` (from ``labels``, else empty), edited by ``apply``; serialised by ``lock``."""

    reserved: frozenset = frozenset()  # labels a new object takes only when asked for by number (a project's table)

    def __init__(self, shape: tuple, labels=None, edited=None, writable=None):
        self.labels = np.zeros(shape, np.uint16)
        if labels is not None:
            if labels.shape != shape:
                raise CaseError(f"its segmentation has shape {labels.shape}, the image {shape}")
            if labels.min(initial=0) < 0 or labels.max(initial=0) > 65535:
                raise CaseError("its segmentation holds labels outside 0-65535")
            self.labels[...] = labels
        self.count()
        self.undo_stack: list = []  # per edit: (flat indices, their labels before, the labels it set, its EDITOR)
        self.redo_stack: list = []  # per undone edit, the same; an editor's new edit clears that editor's
        self.lock = threading.Lock()
        self.guard = Guard()  # where edits may change the label map (the app's "paint over" and locks)
        self.change: dict = {}  # what the last edit did to other objects: {"took": {label: voxels}, "held": voxels}
        self.edited = edited or (lambda where, values: None)
        self.writable = writable or (lambda: None)

    def count(self) -> None:
        """Count each label's voxels again (after the whole map was set)."""
        values, counts = np.unique(self.labels, return_counts=True)
        self.counts = Counter(dict(zip(values.tolist(), counts.tolist())))  # label -> voxels

    def clear(self) -> None:
        """No object and nothing to undo or redo (not an edit: nobody hears it)."""
        with self.lock:
            self.labels[...] = 0
            self.count()
            self.undo_stack.clear()
            self.redo_stack.clear()

    def objects(self) -> list:
        """[(label, voxels)] of the labels present (kept up to date by each edit: no pass over a volume)."""
        return sorted((label, n) for label, n in self.counts.items() if label and n)

    def next_label(self) -> int:
        """The label of a new object when none is asked for: one past the highest (and past ``reserved``, whose
        names belong to other structures), else (past 65535) the lowest free one that is not reserved."""
        top = max((label for label, n in self.counts.items() if n), default=0) + 1
        while top in self.reserved:
            top += 1
        if top <= 65535:
            return top
        free = next((label for label in range(1, 65536) if not self.counts.get(label) and label not in self.reserved),
                    None)
        if free is None:
            raise CaseError("every label 1-65535 is an object: delete one to make another")
        return free

    def remove(self, mask: np.ndarray, label: int) -> int:
        """Object ``label`` loses the voxels of ``mask`` (they become background): one undoable edit. Returns how
        many it lost."""
        with self.lock:
            changed = np.flatnonzero(mask.ravel() & (self.labels.ravel() == int(label)))
            self.apply(changed, np.zeros(len(changed), np.uint16))
            return len(changed)

    def has(self, label: int) -> int:
        """How many voxels object ``label`` has (0: none, a free label)."""
        return self.counts.get(int(label), 0)

    def erase(self, label: int) -> int:
        """Remove object ``label``; returns the voxels removed. Label 0 (the background) is no object."""
        if not 1 <= int(label) <= 65535:
            raise CaseError(f"label {label} is not an object (1-65535)")
        if int(label) in self.guard.locked:
            raise CaseError(f"object {label} is locked: unlock it to delete it")
        with self.lock:
            changed = np.flatnonzero(self.labels == int(label))
            self.apply(changed, np.zeros(len(changed), np.uint16))
            return len(changed)

    def undo(self) -> bool:
        """Take back the last edit of this context's editor (``EDITOR``: a tab; it can be redone); False when it
        has none. Voxels that another edit changed since, or that belong (or would go back) to a locked object,
        stay as they are: ``change["held"]`` counts them."""
        return self._step(self.undo_stack, self.redo_stack)

    def redo(self) -> bool:
        """Make this editor's last undone edit again (as ``undo``); False when there is none (a new edit of the
        same editor forgets its undone ones)."""
        return self._step(self.redo_stack, self.undo_stack)

    def _step(self, source: list, target: list) -> bool:
        with self.lock:
            self.writable()
            editor = EDITOR.get()
            at = next((i for i in range(len(source) - 1, -1, -1) if source[i][3] == editor), None)
            if at is None:
                return False
            where, back, made, _ = source.pop(at)
            now = self.labels.ravel()[where]
            locked = list(self.guard.locked)
            keep = (now == made) & ~np.isin(now, locked) & ~np.isin(back, locked)
            where, back, now = where[keep], back[keep], now[keep]
            target.append((where, now, back, editor))
            self._set(where, back)
            self.edited(where, back)
            self.change = {"took": {}, "held": int((~keep).sum())}
            return True

    def apply(self, where: np.ndarray, values) -> None:
        """Set the voxels ``where`` (flat indices) to ``values`` as one undoable edit, as far as ``guard`` lets it
        (CaseError for an edit that paints a locked object); ``change`` says what it took from other objects and
        how many voxels the guard held back."""
        self.writable()
        old = self.labels.ravel()[where]
        values = np.broadcast_to(np.asarray(values, np.uint16), where.shape)
        locked = sorted(self.guard.locked & set(np.unique(values[old != values]).tolist()) - {0})
        if locked:
            raise CaseError(f"object {locked[0]} is locked: unlock it to change it")
        keep = self.guard.allowed(old, values)
        where, values, taken = where[keep], values[keep], old[keep]
        took = np.unique(taken[(taken != 0) & (values != 0) & (taken != values)], return_counts=True)
        changed = old[keep] != values
        self.change = {"took": dict(zip(took[0].tolist(), took[1].tolist())), "held": int((~keep).sum()),
                       "voxels": int(changed.sum())}
        # one undo step per action, also one that changed nothing (a click: else the next Ctrl-Z takes back the
        # edit before it)
        editor = EDITOR.get()
        self.undo_stack.append((where, taken, values.copy(), editor))
        self.redo_stack[:] = [step for step in self.redo_stack if step[3] != editor]
        del self.undo_stack[:-MAX_UNDO]
        while len(self.undo_stack) > 1 and sum(sum(a.nbytes for a in step[:3])
                                               for step in self.undo_stack) > MAX_UNDO_BYTES:
            del self.undo_stack[0]  # the oldest edits of a large volume are no longer undoable
        if len(where):
            self._set(where, values)
            self.edited(where, self.labels.ravel()[where])

    def _drop(self, step) -> None:
        """Take back ``step``, the last edit made (under ``lock``), leaving no step to redo."""
        if self.undo_stack and self.undo_stack[-1] is step:
            where, taken, _, _ = self.undo_stack.pop()
            self._set(where, taken)
            self.edited(where, taken)

    def _join(self, first, change: dict) -> None:
        """The edits from ``first`` to the last one made (under ``lock``) as one undo step; ``change`` (what
        ``first`` did) added to the last one's."""
        at = next((i for i in range(len(self.undo_stack) - 1, -1, -1) if self.undo_stack[i] is first), None)
        if at is None:
            return  # dropped by the undo budget: the steps stay apart
        steps = self.undo_stack[at:]
        where = np.unique(np.concatenate([step[0] for step in steps]))
        before = self.labels.ravel()[where]
        for step in reversed(steps):  # the earliest step's "before" wins
            before[np.searchsorted(where, step[0])] = step[1]
        self.undo_stack[at:] = [(where, before, self.labels.ravel()[where], steps[-1][3])]
        took = Counter(change.get("took", {})) + Counter(self.change.get("took", {}))
        self.change = {**self.change, "took": dict(took), "held": change.get("held", 0) + self.change.get("held", 0),
                       "voxels": int((before != self.labels.ravel()[where]).sum())}

    def _set(self, where: np.ndarray, values) -> None:
        flat = self.labels.ravel()  # a view: labels is contiguous
        for value, n in zip(*np.unique(flat[where], return_counts=True)):
            self.counts[int(value)] -= int(n)
        flat[where] = values
        for value, n in zip(*np.unique(flat[where], return_counts=True)):
            self.counts[int(value)] += int(n)
