"""The one place where ONNX Runtime sessions are made."""
from __future__ import annotations

import os
from pathlib import Path


def default_threads() -> int:
    """Threads for one session: LITEMEDSAM_THREADS, else the CPUs this process may use."""
    env = os.environ.get("LITEMEDSAM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def make_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session with all graph optimisations and a fixed thread count."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
