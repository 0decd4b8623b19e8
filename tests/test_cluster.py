"""infer --scheduler: a real Dask scheduler and two real worker processes on 127.0.0.1, started here; the outputs
are those of a local run, and a worker killed mid-run loses no case (the scheduler runs its cases elsewhere)."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.test_infer_real import REPO, link_cases
from tests.test_workers import CASES, run

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed (litemedsam[cluster])")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """(address, worker processes): a scheduler and two single-threaded workers with no nanny (a killed worker
    stays dead), all on 127.0.0.1; stopped afterwards."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "LITEMEDSAM_THREADS": "1", "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w"), env=env)]
    for n in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--no-nanny", "--no-dashboard", "--name", f"w{n}"], cwd=REPO,
                                      stdout=subprocess.DEVNULL, stderr=open(logs / f"w{n}.log", "w"), env=env))
    try:
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, procs[1:]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def test_cluster_gives_the_outputs_of_one_process(dev_data, models_ready, cluster, tmp_path):
    address, _ = cluster
    inp = link_cases(dev_data, CASES, tmp_path / "in")
    local, remote = run(inp, tmp_path / "local"), run(inp, tmp_path / "remote", "--scheduler", address)
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    for name in CASES:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes(), name
    rows = (tmp_path / "remote" / "efficiency.csv").read_text().splitlines()
    assert len(rows) == 1 + len(CASES) and all(r.endswith(",ok") for r in rows[1:])
    assert "Traceback" not in remote.stderr


def test_killed_worker_loses_no_case(dev_data, models_ready, cluster, tmp_path):
    address, workers = cluster
    inp = link_cases(dev_data, CASES, tmp_path / "in")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "litemedsam",
            "infer",
            "-i",
            str(inp),
            "-o",
            str(tmp_path / "out"),
            "--scheduler",
            address,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = False
    with distributed.Client(address, timeout=30) as client:
        for _ in range(300):  # kill a worker while it runs a case: the scheduler gives that case to the other
            busy = {w: tasks for w, tasks in client.processing().items() if tasks}
            if len(busy) == 2:  # each worker has a case: killing one now loses the case it holds
                pid = client.run(os.getpid, workers=[sorted(busy)[0]])[sorted(busy)[0]]
                assert pid in {w.pid for w in workers}
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.05)
    out, err = proc.communicate(timeout=300)
    assert killed and proc.returncode == 0, err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npz")) == sorted(CASES)
    assert f"{len(CASES)} segmented, 0 failed" in out and "Traceback" not in err


def test_unreachable_scheduler_is_a_clear_error(tmp_path, dev_data):
    inp = link_cases(dev_data, CASES[:1], tmp_path / "in")
    bad = run(inp, tmp_path / "out", "--scheduler", "tcp://not a host:1")
    assert bad.returncode == 2 and "is not a Dask scheduler address" in bad.stderr and "Traceback" not in bad.stderr


def test_each_way_of_not_reaching_a_scheduler_is_said(tmp_path, dev_data):
    """Refused, unknown host, a bad port, a server that accepts and never speaks, one that answers garbage: each
    its own message, exit 2, no traceback, no hang (the silent server costs the timeout, not forever)."""
    import socket

    from litemedsam.run.cluster import connect
    from litemedsam.core.errors import UsageError

    inp = link_cases(dev_data, CASES[:1], tmp_path / "in")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]  # closed again: nothing listens there
    for address, message in ((f"tcp://127.0.0.1:{free}", "connection refused"),
                             ("tcp://no-such-host.invalid:8786", "unknown host no-such-host.invalid"),
                             ("tcp://127.0.0.1:99999", "port 99999 is not a port")):
        done = run(inp, tmp_path / "out", "--scheduler", address)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr

    from hostile_probe import fake_server

    for answer, message in (
        (b"", "accepted the connection but sent nothing"),
        (b"\xff" * 64, "speaks another protocol"),
    ):
        listener = fake_server(answer)
        try:
            with pytest.raises(UsageError, match=message):
                connect(f"tcp://127.0.0.1:{listener.getsockname()[1]}", timeout=1)
        finally:
            listener.close()
