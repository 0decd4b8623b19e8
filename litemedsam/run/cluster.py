"""Cases on a Dask distributed cluster (``infer --scheduler tcp://HOST:PORT``; the extra ``litemedsam[cluster]``).

Each case is one task that calls ``runner.run_case`` on a worker. The run's RunSpec (its router, options,
given boxes; no model sessions) is shipped once to every worker as a worker plugin, which makes the model
sessions on that worker when its first case needs them and keeps them for the run. A worker runs one case at
a time (ONNX Runtime already uses its cores); start workers with ``--nthreads 1``.

Files are not shipped: every worker reads the inputs and writes the outputs at the same paths as this
process, so the input and output folders must be on a file system shared by all machines (NFS, a cluster's
home or scratch). A worker that cannot see them fails its cases with a message saying so. A case whose
worker is lost (killed, out of memory, machine gone) is run again on another worker by the scheduler; one that
keeps killing workers fails alone. The parent keeps the books (efficiency.csv, run.json, the printed lines)
as cases finish, exactly as for worker processes on this machine (litemedsam.run.workers).
"""
from __future__ import annotations

import dataclasses
import os
import re
import socket
import threading
import uuid
from typing import cast
from pathlib import Path

import cloudpickle
from distributed import Client, WorkerPlugin, as_completed, get_worker
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from litemedsam import __version__
from litemedsam.core.errors import LitemedsamError, ModelError, UsageError, shown
from litemedsam.run.workers import largest_first


class ClusterError(LitemedsamError):
    """The cluster itself failed (its scheduler lost): nothing more can run."""


class RunPlugin(WorkerPlugin):
    """The run's RunSpec on one worker: unpickled at setup, with model sessions made by its first case."""

    def __init__(self, blob: bytes, threads: int | None):
        self.blob, self.threads, self.version = blob, threads, __version__

    def setup(self, worker):
        from litemedsam.models.segmenter import Segmenters
        from litemedsam.models.session import available_cpus

        self.spec = cloudpickle.loads(self.blob)
        threads = min(self.threads, available_cpus()) if self.threads else None  # None: the worker's own default
        self.segmenters = Segmenters(threads)
        self.lock = threading.Lock()

    def teardown(self, worker):
        self.spec = self.segmenters = None


def run_case(plugin_name: str, job):
    """The task: one case on this worker -> ("done", Result, lines) or ("model", message)."""
    from litemedsam.run.runner import Result, run_case as run

    worker = get_worker()
    plugin = cast(RunPlugin, worker.plugins[plugin_name])  # the one this run registered
    if plugin.version != __version__:
        return "model", f"worker {worker.address} runs litemedsam {__version__}, this run {plugin.version}"
    if not job.path.exists() or not job.target.parent.is_dir():
        missing = job.path if not job.path.exists() else job.target.parent
        return "done", Result(job.path.name, 0.0, "failed",
                              f"worker {worker.address} cannot see {shown(missing)}: every worker needs the input "
                              f"and output folders at the same path (a shared file system)",
                              output=job.target.name), []
    with plugin.lock:
        try:
            return ("done", *run(plugin.spec, job, plugin.segmenters))
        except ModelError as e:
            return "model", f"on worker {worker.address}: {e}"


ADDRESS = re.compile(r"(tcp|tls)://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):([0-9]{1,5})")


def check_address(address: str) -> str:
    """``address`` when it is a scheduler address (tcp:// or tls://HOST:PORT), else UsageError."""
    found = ADDRESS.fullmatch(address)
    if not found:
        raise UsageError(f"--scheduler {shown(address)!r} is not a Dask scheduler address (tcp://HOST:PORT)")
    if not 1 <= int(found.group(3)) <= 65535:
        raise UsageError(f"--scheduler {shown(address)!r}: port {found.group(3)} is not a port (1-65535)")
    return address


def _greeting(conn: socket.socket) -> bytes:
    """The first 16 bytes a server sends on its own (fewer if it closes or stays silent for the socket's timeout)."""
    data = b""
    try:
        while len(data) < 16:
            chunk = conn.recv(16 - len(data))
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


def connect(address: str, timeout: float = 15.0):
    """A client of the scheduler at ``address``, or UsageError saying why not: an unknown host, nothing listening
    (refused), no answer, or a server that is not a Dask scheduler (silent, or speaking something else). The
    client is made in a thread of its own and waited for at most ``timeout`` more seconds, so that a server that
    accepts and never answers cannot hang the command (Ctrl-C and SIGTERM work while waiting); over tcp:// the
    server's greeting is read first, so that one that is silent or speaks another protocol is told apart without
    making a Dask client for it."""
    found = ADDRESS.fullmatch(check_address(address))
    assert found is not None  # check_address matched it
    host, port = found.group(2, 3)
    host = host.strip("[]")
    start = f"cannot reach the Dask scheduler at {shown(address)}"
    hint = f"start one with 'dask scheduler' and workers with 'dask worker {shown(address)} --nthreads 1'"
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise UsageError(f"{start}: unknown host {shown(host)} ({shown(getattr(e, 'strerror', e) or e)})") from None
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as probe:
            greeting = _greeting(probe) if address.startswith("tcp://") else None
    except ConnectionRefusedError:
        raise UsageError(f"{start}: connection refused (nothing listens on port {port}); {hint}") from None
    except socket.timeout:
        raise UsageError(f"{start}: no answer within {timeout:.0f} s (a firewall, or the host is down)") from None
    except OSError as e:
        raise UsageError(f"{start}: {shown(e.strerror or e)}") from None
    if greeting is not None:  # a Dask scheduler greets first: a frame count and sizes (distributed.comm.tcp)
        size, frames = int.from_bytes(greeting[:8], "little"), int.from_bytes(greeting[8:], "little")
        if len(greeting) < 16 or not (1 <= frames <= 64 and 0 < size <= 1 << 24):
            what = "it accepted the connection but sent nothing" if not greeting else "it speaks another protocol"
            raise UsageError(f"the server at {shown(address)} is not a Dask scheduler ({what}); {hint}")
    made: dict = {}

    def make():
        try:
            made["client"] = Client(address, timeout=timeout, set_as_default=False)
        except BaseException as e:  # whatever the server sent: said below, never a traceback
            made["error"] = e
    thread = threading.Thread(target=make, name="litemedsam-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if "client" in made:
        return made["client"]
    what = f"{type(made['error']).__name__}: {shown(made['error'])[:200]}" if "error" in made else \
        f"it accepted the connection but did not answer within {timeout + 5:.0f} s"
    raise UsageError(f"the server at {shown(address)} does not answer as a Dask scheduler ({what}); {hint}")


def executor(address: str, threads: int | None):
    """An executor for FolderRun.predict_folder: jobs -> (job, Result, lines) as they finish on the cluster.
    ``threads``: ONNX Runtime threads per worker, None for each worker's own CPUs."""
    check_address(address)

    def run(spec, jobs, echo=print):
        if not jobs:
            return
        shipped = spec.shippable()
        try:
            blob = cloudpickle.dumps(shipped)
        except Exception as e:
            raise UsageError(f"these options cannot run on a cluster ({shown(e)}); --scheduler runs box prompts "
                             f"(the router or --model) and --prompt none") from None
        client = connect(address)
        name = f"litemedsam-{uuid.uuid4().hex}"
        futures = {}
        try:
            if not client.scheduler_info().get("workers"):
                echo(f"WARNING: the Dask scheduler at {shown(address)} has no workers yet; the cases wait "
                               f"for one")
            client.register_plugin(RunPlugin(blob, threads), name=name)
            ordered = largest_first(jobs)
            for n, job in enumerate(ordered):
                remote = dataclasses.replace(job, path=Path(os.path.abspath(job.path)),
                                             target=Path(os.path.abspath(job.target)))
                future = client.submit(run_case, name, remote, key=f"{name}-{n}", priority=len(ordered) - n,
                                       pure=False, retries=0)
                futures[future] = job
            for future in as_completed(futures, loop=client.loop):
                job = futures.pop(future)
                message = _outcome(future, job, address)
                if message[0] == "model":
                    raise ModelError(message[1])
                yield (job, *message[1:])
        finally:
            try:
                if futures:
                    client.cancel(list(futures), force=True)
                client.unregister_worker_plugin(name)
            except Exception:  # the scheduler may be gone; its tasks and the plugin then went with it
                pass
            client.close(timeout=5)

    return run


def _outcome(future, job, address: str) -> tuple:
    """A finished task's message; a failed task fails its case, a lost scheduler ends the run (ClusterError)."""
    from litemedsam.run.runner import Result

    try:
        return future.result()
    except (OSError, TimeoutError) as e:  # the scheduler went away (CommClosedError is an OSError)
        raise ClusterError(f"lost the Dask scheduler at {shown(address)} ({shown(e) or type(e).__name__}); "
                           f"finished cases are kept; resume with --continue-prediction") from None
    except FutureCancelledError:
        why = "cancelled by the cluster (its scheduler restarted?)"
    except KilledWorker:  # it ended every worker that ran it
        why = "it ended each worker that ran it (out of memory?); the other cases go on"
    except Exception as e:
        why = f"the cluster failed it ({shown(e)})"
    return "done", Result(job.path.name, 0.0, "failed", why, output=job.target.name), []
