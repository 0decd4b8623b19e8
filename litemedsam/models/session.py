"""The one place where ONNX Runtime sessions are made."""
from __future__ import annotations

import math
import os
from pathlib import Path

from litemedsam.core.errors import ModelError, UsageError, shown


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup v2 quota (docker run --cpus), if any."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def interruptible():
    """Options for one model run that another thread can stop: ``options.terminate = True`` makes the run raise
    within milliseconds, leaving the session as it was (litemedsam.serve.encoding.ModelTurns stops background
    encoding so when a prompt comes)."""
    import onnxruntime as ort

    return ort.RunOptions()


MAX_THREADS = 1024  # more is never a thread count but a typo (ONNX Runtime would fail on every session)


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask and the container's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return max(1, min(cpus, limit) if limit else cpus)


def resolve_threads(requested: int | None = None, source: str = "--threads") -> tuple[int, str | None]:
    """(threads, warning) for ``--threads`` (or, when None, $LITEMEDSAM_THREADS, else every CPU available),
    checked once per run: UsageError unless an integer 1-1024; more than the CPUs available is capped to
    them (more threads than cores only slows ONNX Runtime down), with a warning saying so."""
    if requested is None:
        env = os.environ.get("LITEMEDSAM_THREADS", "").strip()
        if not env:
            return available_cpus(), None
        source = "LITEMEDSAM_THREADS"
        if not env.isdigit():
            raise UsageError(f"{source}={shown(env)!r} is not a number of threads (an integer 1-{MAX_THREADS})")
        requested = int(env)
    if not isinstance(requested, int) or isinstance(requested, bool) or not 1 <= requested <= MAX_THREADS:
        raise UsageError(f"{source} {requested} is not a usable number of threads (1-{MAX_THREADS})")
    cpus = available_cpus()
    if requested > cpus:
        return cpus, f"{source} {requested} is more than the {cpus} CPU(s) this process may use; using {cpus}"
    return requested, None


def default_threads() -> int:
    """Threads for one session when none is given: as ``resolve_threads(None)``."""
    return resolve_threads(None)[0]


def _options(threads: int | None, level, save_to=None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if save_to is not None:  # a graph_cache.Slot
        opts.optimized_model_filepath = str(save_to.graph)
        for key, value in save_to.session_config().items():
            opts.add_session_config_entry(key, value)
    return opts


def _session(path, opts):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ONNX Runtime's own exception types; its first line says what is wrong
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise ModelError(f"{shown(path)}: ONNX Runtime cannot load it ({shown(lines[0])[:300]})") from None


def make_session(path: str | Path, threads: int | None = None, sha256: str | None = None):
    """An ONNX Runtime CPU session with all graph optimisations and a fixed thread count.

    With ``sha256`` (the verified checksum of ``path``), the graph as ONNX Runtime optimised it is kept in
    the optimised-graph cache (litemedsam.models.graph_cache) and later sessions load it without optimising again
    and with its weights mapped from a file of their own (0.03 s instead of 0.25 s for LiteMedSAM's encoder,
    the same results to the bit)."""
    import onnxruntime as ort

    from litemedsam.models import graph_cache

    all_on = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not sha256:
        return _session(path, _options(threads, all_on))
    cached = graph_cache.lookup(sha256)
    if cached is not None:
        try:
            return _session(cached, _options(threads, ort.GraphOptimizationLevel.ORT_DISABLE_ALL))
        except ModelError:
            graph_cache.discard(sha256)  # unusable: rebuilt below
    slot = graph_cache.reserve(sha256)
    if slot is None:
        return _session(path, _options(threads, all_on))
    try:
        session = _session(path, _options(threads, all_on, save_to=slot))
    except BaseException:
        slot.remove()
        raise
    graph_cache.commit(sha256, slot)
    return session


def graph_size(session) -> int:
    """The square input size an image graph was exported for."""
    return int(session.get_inputs()[0].shape[-1])
