"""Object arrays of records (the 2025 challenge layout's ``boxes``: dicts of numbers), read without running
anything from the file.

NumPy stores an object array as a pickle, and a pickle may call any function it names. This loader admits
only what NumPy itself writes for an array of dicts of numbers: the array reconstructor, ``ndarray``,
``dtype`` and the scalar constructor; anything else the pickle names (``os.system``, ``builtins.eval``,
any class) is refused before it is looked up, so nothing is imported or called. What comes out must then
be a 1-D array (or list) of dicts whose keys are strings and whose values are finite numbers.
"""
from __future__ import annotations

import io
import math
import pickle
from numbers import Real

import numpy as np

from litemedsam.errors import CaseError

MAX_RECORD_BYTES = 16 << 20  # a pickled member larger than this is not a list of boxes
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise CaseError(f"its pickled data names {module}.{name}; only arrays of dicts of numbers are read "
                            f"(nothing from the file was run)")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise CaseError("its pickled data refers to outside objects; only arrays of dicts of numbers are read")


def load_records(data: bytes, key: str) -> list:
    """The records (dicts of str -> float or int) of a pickled object array ``key``; CaseError otherwise."""
    if len(data) > MAX_RECORD_BYTES:
        raise CaseError(f"'{key}' holds {len(data)} bytes of pickled data; at most {MAX_RECORD_BYTES} are read")
    try:
        value = _Unpickler(io.BytesIO(data)).load()
    except CaseError:
        raise
    except Exception as e:  # any malformed pickle: its own message, never run
        raise CaseError(f"'{key}' is not a readable array of records ({type(e).__name__})") from None
    if isinstance(value, np.ndarray) and value.ndim > 1:
        raise CaseError(f"'{key}' must be a 1-D array of dicts of numbers, got shape {value.shape}")
    items = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise CaseError(f"'{key}' must be a list of dicts of numbers, got {type(value).__name__}")
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
