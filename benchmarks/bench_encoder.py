"""Encoder graphs against each other in one process: median seconds per run, interleaved run by run, the ratio
to the first graph, the largest difference of the embeddings, and (``--ops``) where ONNX Runtime spends each
graph's time by operator type.

    python -m benchmarks.bench_encoder [GRAPH.onnx ...] [--runs 12] [--threads N] [--ops]

GRAPH defaults to the registered LiteMedSAM encoder. Use it to judge a re-arranged export before it replaces
today's graph: same inputs, same session options as the runtime (litemedsam.models.session), no cache.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from litemedsam.models.registry import get_model, model_files
from litemedsam.models.session import make_session


def op_profile(path: Path, threads: int | None, image: np.ndarray, runs: int = 4) -> list:
    """(operator type, milliseconds per run, share) by ONNX Runtime's profiler, most expensive first."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or 0
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"litemedsam-profile-{os.getpid()}")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, {"image": image})
    trace = session.end_profiling()
    try:
        events = json.loads(Path(trace).read_text())
    finally:
        os.unlink(trace)
    spent = Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            spent[e["args"]["op_name"]] += e["dur"]
    total = sum(spent.values())
    return [(op, us / runs / 1000, us / total) for op, us in spent.most_common()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graphs", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--ops", action="store_true")
    args = parser.parse_args(argv)
    graphs = args.graphs or [model_files(get_model("litemedsam"))[0][0]]
    sessions = [make_session(g, args.threads) for g in graphs]
    size = int(sessions[0].get_inputs()[0].shape[-1])
    image = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    outputs = [s.run(None, {"image": image})[0] for s in sessions]
    seconds: list = [[] for _ in graphs]
    for r in range(args.runs):
        order = range(len(graphs)) if r % 2 else reversed(range(len(graphs)))
        for i in order:
            start = time.perf_counter()
            sessions[i].run(None, {"image": image})
            seconds[i].append(time.perf_counter() - start)
    first = np.median(seconds[0])
    for graph, out, times in zip(graphs, outputs, seconds):
        print(f"{str(graph):60s} median {np.median(times):.4f} s  ratio {np.median(times) / first:.3f}  "
              f"max abs diff vs first {np.abs(out - outputs[0]).max():.3g}")
    if args.ops:
        for graph in graphs:
            print(f"\n{graph}")
            for op, ms, share in op_profile(graph, args.threads, image)[:15]:
                print(f"  {op:26s} {ms:8.2f} ms {100 * share:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
