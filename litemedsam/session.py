"""The one place where ONNX Runtime sessions are made."""
from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup v2 quota (docker run --cpus), if any."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def default_threads() -> int:
    """Threads for one session: $LITEMEDSAM_THREADS, else the CPUs this process may use
    (affinity mask and container CPU quota)."""
    env = os.environ.get("LITEMEDSAM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return max(1, min(cpus, limit) if limit else cpus)


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
