"""Object arrays of records (the 2025 challenge layout's ``boxes``: dicts of numbers; its ``clicks``: dicts of
lists of [z, y, x] integers; its ``clicks_order``: lists of "fg"/"bg"/None), read without running anything from
the file.

NumPy stores an object array as a pickle, and a pickle may call any function it names. This loader admits
only the names NumPy itself writes for an array of dicts of numbers (the array reconstructor, ``ndarray``,
``dtype`` and the scalar constructor) and binds each to a stand-in of ours that checks its arguments before
anything is allocated: an array is 1-D, of objects, with at most as many items as a case may hold objects; a
dtype is a plain number (no sub-arrays or fields); a value is a number of its dtype's size. Anything else the
pickle names (``os.system``, ``builtins.eval``, any class) is refused before it is looked up, so nothing is
imported or called. What comes out must then be a 1-D array (or list) of dicts whose keys are strings and whose
values are finite numbers.
"""
from __future__ import annotations

import io
import math
import pickle
from numbers import Real

import numpy as np

from litemedsam.core.errors import CaseError

MAX_RECORD_BYTES = 4 << 20  # a pickled member larger than this is not a list of boxes (its objects: < 300 MB)
MAX_CLICKS = 1000  # clicks of a case, all classes together (the challenge gives one per class and step, 5 steps)
SIDES = ("fg", "bg")
NUMBERS = {"i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "b1"}  # dtype codes of the values


class _DType:
    """A dtype the pickle asks for: object (the array) or a plain number (its values), nothing else."""

    def __init__(self, code, align=False, copy=True):
        if code not in NUMBERS | {"O8"}:
            raise CaseError(f"its pickled data asks for dtype {str(code)[:20]!r}; only records of numbers are read")
        self.dtype = np.dtype(code)

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 8 and state[1] in ("<", ">", "|", "=")
                and state[2:5] == (None, None, None)):
            raise CaseError("its pickled data builds a structured or sub-array dtype; only records of numbers are read")
        if state[1] == ">":
            self.dtype = self.dtype.newbyteorder(">")


class _Array:
    """The object array of records the pickle builds: its shape, dtype and items checked before anything is made."""

    def __init__(self, limit: int, rows: bool = False):
        self.limit, self.rows, self.items = limit, rows, None  # rows: a 2-D array is read as a list of rows

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[1], tuple)):
            raise CaseError("its pickled array is not an array NumPy writes")
        shape = state[1]
        if len(shape) > (2 if self.rows else 1) or not all(type(n) is int and n >= 0 for n in shape):
            raise CaseError(f"its pickled array has shape {str(shape)[:40]}; it must be a 1-D array of dicts of "
                            f"numbers")
        count = shape[0] if shape else 1
        width = shape[1] if len(shape) == 2 else None
        if count > self.limit or (width or 0) > 2 * MAX_CLICKS:
            raise CaseError(f"its pickled array holds {count} records; a case holds at most {self.limit} objects")
        if not (isinstance(state[2], _DType) and state[2].dtype == object and isinstance(state[4], list)
                and len(state[4]) == count * (width if width is not None else 1)):
            raise CaseError("its pickled array is not an array of records (object dtype, one item per entry)")
        items = state[4]
        self.items = items if width is None else [items[i * width:(i + 1) * width] for i in range(count)]


def _reconstruct(cls, shape, code, limit: int, rows: bool = False):
    """NumPy's array reconstructor, as NumPy calls it for a pickle (an empty array, filled by __setstate__)."""
    if cls is not np.ndarray or shape != (0,) or code != b"b":
        raise CaseError("its pickled data builds an array in a way NumPy never writes; only records of numbers are "
                        "read")
    return _Array(limit, rows)


def _scalar(dtype, data):
    """A number the pickle holds, from its dtype and its bytes."""
    if not (isinstance(dtype, _DType) and dtype.dtype != object and isinstance(data, bytes)
            and len(data) == dtype.dtype.itemsize):
        raise CaseError("its pickled data holds a value that is not a plain number")
    return np.frombuffer(data, dtype.dtype)[0]


ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, limit: int, rows: bool = False):
        super().__init__(io.BytesIO(data))
        self.limit, self.rows = limit, rows

    def find_class(self, module, name):
        """Only NumPy's names for an array of records, each bound to our checked stand-in (never imported)."""
        if (module, name) not in ALLOWED:
            raise CaseError(f"its pickled data names {module}.{name}; only arrays of dicts of numbers are read "
                            f"(nothing from the file was run)")
        return {"_reconstruct": lambda cls, shape, code: _reconstruct(cls, shape, code, self.limit, self.rows),
                "scalar": _scalar, "ndarray": np.ndarray, "dtype": _DType}[name]

    def persistent_load(self, pid):
        raise CaseError("its pickled data refers to outside objects; only arrays of dicts of numbers are read")


def load_records(data: bytes, key: str, limit: int) -> list:
    """The records of a pickled object array ``key`` (at most ``limit``), checked for what the 2025 layout puts
    there: ``clicks`` dicts {"fg": [[z, y, x], ...], "bg": [...]} of integer triples (``clicks_of``),
    ``clicks_order`` lists of "fg", "bg" or None (``order_of``), anything else dicts of str -> finite numbers.
    CaseError otherwise."""
    items = _load_items(data, key, limit, rows=key == "clicks_order")  # equal-length orders make a 2-D array
    if key in ("clicks", "clicks_order"):  # counted before any is copied: a pickle may repeat one list everywhere
        lists = [v for item in items for v in (item.values() if isinstance(item, dict) else [item])]
        total = sum(len(v) for v in lists if isinstance(v, (list, tuple)))
        if total > (MAX_CLICKS if key == "clicks" else 2 * MAX_CLICKS):
            raise CaseError(f"'{key}' holds {total} clicks in all; a case takes at most {MAX_CLICKS}")
    if key == "clicks":
        return [clicks_of(item, key, i) for i, item in enumerate(items)]
    if key == "clicks_order":
        return [order_of(item, key, i) for i, item in enumerate(items)]
    return _numbers(items, key)


def clicks_of(item, key: str, i: int) -> dict:
    """One class's clicks: {"fg": [(z, y, x), ...], "bg": [...]} with non-negative integer coordinates."""
    if not isinstance(item, dict) or not set(item) <= set(SIDES):
        raise CaseError(f"'{key}' item {i} must be a dict with 'fg' and 'bg' lists of [z, y, x] clicks")
    clicks = {}
    for side in SIDES:
        points = item.get(side) or []
        if not isinstance(points, (list, tuple)):
            raise CaseError(f"'{key}' item {i}: '{side}' must be a list of [z, y, x] clicks")
        triples = []
        for p in points:
            p = list(p) if isinstance(p, (list, tuple, np.ndarray)) else p
            if not (isinstance(p, list) and len(p) == 3 and all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < 1 << 31 for v in p)):
                raise CaseError(f"'{key}' item {i}: each '{side}' click must be 3 non-negative integers [z, y, x], "
                                f"got {str(p)[:40]}")
            triples.append(tuple(int(v) for v in p))
        clicks[side] = triples
    return clicks


def order_of(item, key: str, i: int) -> list:
    """One class's click order: a list of "fg", "bg" or None (no click at that step)."""
    if not isinstance(item, (list, tuple)) or not all(
            v is None or v in SIDES for v in item):
        raise CaseError(f"'{key}' item {i} must be a list of 'fg', 'bg' or None")
    return list(item)


def _load_items(data: bytes, key: str, limit: int, rows: bool = False) -> list:
    """The items of a pickled object array (NumPy's own names only, nothing run), at most ``limit``."""
    if len(data) > MAX_RECORD_BYTES:
        raise CaseError(f"'{key}' holds {len(data)} bytes of pickled data; at most {MAX_RECORD_BYTES} are read")
    try:
        value = _Unpickler(data, limit, rows).load()
    except CaseError:
        raise
    except Exception as e:  # any malformed pickle: its own message, never run
        raise CaseError(f"'{key}' is not a readable array of records ({type(e).__name__})") from None
    items = value.items if isinstance(value, _Array) else value
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise CaseError(f"'{key}' must be a list of dicts of numbers, got {type(value).__name__}")
    if len(items) > limit:
        raise CaseError(f"'{key}' holds {len(items)} records; a case holds at most {limit} objects")
    return items


def _numbers(items: list, key: str) -> list:
    """Records of dicts of str -> finite numbers."""
    records = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise CaseError(f"'{key}' item {i} must be a dict of numbers, got {type(item).__name__}")
        record = {}
        for k, v in item.items():
            if isinstance(v, np.generic):
                v = v.item()
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
                raise CaseError(f"'{key}' item {i}: {k!r} must name a finite number, got {type(v).__name__}")
            record[k] = v
        records.append(record)
    return records
