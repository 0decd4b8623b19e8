"""Object arrays of records (the 2025 challenge layout's ``boxes``: dicts of numbers), read without running
anything from the file.

NumPy stores an object array as a pickle, and a pickle may call any function it names. This loader admits
only the names NumPy itself writes for an array of dicts of numbers (the array reconstructor, ``ndarray``,
``dtype`` and the scalar constructor) and binds each to a stand-in of ours that checks its arguments before
anything is allocated: an array is 1-D, of objects, with at most as many items as a case may hold objects; a dtype is a plain number
(no sub-arrays or fields); a value is a number of its dtype's size. Anything else the pickle names
(``os.system``, ``builtins.eval``, any class) is refused before it is looked up, so nothing is imported or called. What comes out must then
be a 1-D array (or list) of dicts whose keys are strings and whose values are finite numbers.
"""
from __future__ import annotations

import io
import math
import pickle
from numbers import Real

import numpy as np

from litemedsam.core.errors import CaseError

MAX_RECORD_BYTES = 4 << 20  # a pickled member larger than this is not a list of boxes (its objects: < 300 MB)
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

    def __init__(self, limit: int):
        self.limit, self.items = limit, None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[1], tuple)):
            raise CaseError("its pickled array is not an array NumPy writes")
        if len(state[1]) > 1 or not all(type(n) is int and n >= 0 for n in state[1]):
            raise CaseError(f"its pickled array has shape {str(state[1])[:40]}; it must be a 1-D array of dicts of "
                            f"numbers")
        count = state[1][0] if state[1] else 1
        if count > self.limit:
            raise CaseError(f"its pickled array holds {count} records; a case holds at most {self.limit} objects")
        if not (isinstance(state[2], _DType) and state[2].dtype == object and isinstance(state[4], list)
                and len(state[4]) == count):
            raise CaseError("its pickled array is not an array of records (object dtype, one item per entry)")
        self.items = state[4]


def _reconstruct(cls, shape, code, limit: int):
    """NumPy's array reconstructor, as NumPy calls it for a pickle (an empty array, filled by __setstate__)."""
    if cls is not np.ndarray or shape != (0,) or code != b"b":
        raise CaseError("its pickled data builds an array in a way NumPy never writes; only records of numbers are read")
    return _Array(limit)


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
    def __init__(self, data: bytes, limit: int):
        super().__init__(io.BytesIO(data))
        self.limit = limit

    def find_class(self, module, name):
        """Only NumPy's names for an array of records, each bound to our checked stand-in (never imported)."""
        if (module, name) not in ALLOWED:
            raise CaseError(f"its pickled data names {module}.{name}; only arrays of dicts of numbers are read "
                            f"(nothing from the file was run)")
        return {"_reconstruct": lambda cls, shape, code: _reconstruct(cls, shape, code, self.limit),
                "scalar": _scalar, "ndarray": np.ndarray, "dtype": _DType}[name]

    def persistent_load(self, pid):
        raise CaseError("its pickled data refers to outside objects; only arrays of dicts of numbers are read")


def load_records(data: bytes, key: str, limit: int) -> list:
    """The records (dicts of str -> float or int) of a pickled object array ``key``, at most ``limit`` of them;
    CaseError otherwise."""
    if len(data) > MAX_RECORD_BYTES:
        raise CaseError(f"'{key}' holds {len(data)} bytes of pickled data; at most {MAX_RECORD_BYTES} are read")
    try:
        value = _Unpickler(data, limit).load()
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
