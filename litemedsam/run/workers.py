"""Worker processes on this machine (``infer --workers N``): each worker is forked with the run's RunSpec, makes
its own model sessions and runs ``runner.run_case`` on the cases it is handed, largest first
(voxels x boxes), so that one big volume does not finish last. The parent keeps the books (efficiency.csv,
run.json, the printed lines) as cases finish. A case whose worker dies (killed, out of memory) fails alone with
a message and the worker is replaced; Ctrl-C or SIGTERM stop the workers (their temporary files removed) and
keep every finished output.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path

from litemedsam.core.errors import ModelError, Terminated, terminate_on_sigterm


def case_work(path: Path) -> int:
    """How much work a case is, roughly: voxels x boxes for a challenge file (from its headers), else bytes."""
    try:
        if path.name.lower().endswith(".npz"):
            from litemedsam.io.npz import array_headers

            shapes = {k: shape for k, (shape, _) in array_headers(path, ("imgs", "boxes")).items()}
            return math.prod(shapes.get("imgs", (1,))) * max(1, (shapes.get("boxes") or (1,))[0])
        if path.is_dir():
            return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
        return path.stat().st_size
    except Exception:  # an unreadable case is quick: it fails when read
        return 0


def largest_first(jobs: list) -> list:
    """The jobs in the order to hand them out: the most work first (case_work), so that none finishes last alone."""
    return sorted(jobs, key=lambda j: case_work(j.path), reverse=True)


def _serve(conn, spec, threads, parent: int) -> None:
    """A worker: run the jobs it receives until it receives None (its own model sessions, made by its first case),
    or until its parent is gone."""
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.run.runner import run_case

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops its workers
    terminate_on_sigterm()
    orphan_ends(parent)
    segmenters = Segmenters(threads)
    try:
        while True:
            job = conn.recv()
            if job is None:
                return
            try:
                conn.send(("done", *run_case(spec, job, segmenters)))
            except ModelError as e:
                conn.send(("model", str(e)))
    except (Terminated, EOFError, BrokenPipeError):
        return


def orphan_ends(parent: int, every: float = 0.5) -> None:
    """End this worker as SIGTERM ends it (its temporary files removed) once ``parent`` is gone (``kill -9`` of
    infer): a forked worker holds pipe ends of its siblings, so it would never see its own pipe close."""
    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True, name="litemedsam-parent-watch").start()


class Worker:
    def __init__(self, spec, threads):
        context = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, spec, threads, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.job = None

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None) if self.job is None else self.process.terminate()
            except (BrokenPipeError, OSError):
                pass
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(timeout)
        self.conn.close()


def died(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        why = " (killed: out of memory?)" if name == "SIGKILL" else ""
        return f"its worker process ended by {name}{why}; the other cases go on"
    return f"its worker process ended unexpectedly (exit code {code}); the other cases go on"


def executor(count: int, threads: int | None = None):
    """An executor for FolderRun.predict_folder: ``count`` worker processes of ``threads`` ONNX Runtime threads;
    (spec, jobs, echo) -> (job, Result, lines) as they finish."""

    def run(spec, jobs, echo=print):
        from litemedsam.run.runner import Result

        pending = largest_first(jobs)
        workers = [Worker(spec, threads) for _ in range(min(count, len(pending)))]
        try:
            while pending or any(w.job for w in workers):
                hand_out(workers, pending, spec, threads)
                busy = [w for w in workers if w.job is not None]
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for n, w in enumerate(list(workers)):
                    if w.job is None or (w.conn not in ready and w.process.sentinel not in ready):
                        continue
                    message = received(w)
                    job, w.job = w.job, None
                    if message is None:  # the worker died with this case
                        w.process.join(2.0)  # its pipe may close a moment before it can be reaped
                        text = died(w.process) if not w.process.is_alive() else "its worker process stopped answering"
                        w.stop(0.1)
                        workers[n] = Worker(spec, threads)
                        yield job, Result(job.path.name, 0.0, "failed", text, output=job.target.name), []
                    elif message[0] == "model":
                        raise ModelError(message[1])
                    else:
                        yield (job, *message[1:])
        finally:
            for w in workers:
                w.stop()

    return run


def hand_out(workers: list, pending: list, spec, threads: int | None) -> None:
    """Each idle worker takes the next of ``pending`` (a worker that died while idle is replaced first)."""
    for n, w in enumerate(list(workers)):
        if w.job is None and pending:
            try:
                w.conn.send(pending[0])
            except (BrokenPipeError, OSError):  # died while idle: replaced, the job goes to the next
                w.stop(0.1)
                workers[n] = w = Worker(spec, threads)
                w.conn.send(pending[0])
            w.job = pending.pop(0)


def received(w: Worker):
    """The answer worker ``w`` sent, None when it died (its pipe closed, or nothing to read)."""
    try:
        return w.conn.recv() if w.conn.poll() else None
    except (EOFError, OSError):
        return None


def default_threads(workers: int) -> int:
    """ONNX Runtime threads per worker when none are given: the CPUs available shared out, at least 1."""
    from litemedsam.models.session import available_cpus

    return max(1, available_cpus() // max(1, workers))


