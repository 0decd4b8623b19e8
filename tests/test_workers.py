"""infer --workers N: the same outputs as one process, largest cases first, and a worker killed mid-case costs
that case only."""
import os
import signal
import subprocess
import sys

from conftest import wait_for_pause
from tests.test_infer_real import REPO, link_cases

CASES = ["2DBox_CT_SAMMed2D_s0114_111.npz", "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz",
         "3DBox_MR_pyradiomics_breast1.npz", "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz"]


def run(inp, out, *args):
    return subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", str(inp), "-o", str(out), *args],
                          capture_output=True, text=True, cwd=REPO)


def test_two_workers_give_the_outputs_of_one_process(dev_data, models_ready, tmp_path):
    inp = link_cases(dev_data, CASES, tmp_path / "in")
    one, two = run(inp, tmp_path / "one"), run(inp, tmp_path / "two", "--workers", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    for name in CASES:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    rows = (tmp_path / "two" / "efficiency.csv").read_text().splitlines()
    assert len(rows) == 1 + len(CASES) and all(r.endswith(",ok") for r in rows[1:])


def test_killed_worker_fails_only_its_case(dev_data, models_ready, tmp_path):
    from litemedsam.run.workers import case_work

    inp = link_cases(dev_data, CASES, tmp_path / "in")
    assert max(CASES, key=lambda c: case_work(inp / c)).startswith("3DBox")  # the largest go first
    flag = tmp_path / "paused"  # the worker that segments the CT volume stops there, its pid in the flag
    env = {**os.environ, "LITEMEDSAM_PAUSE_IN": f"{CASES[3]}:{flag}"}
    proc = subprocess.Popen([sys.executable, "-m", "litemedsam", "infer", "-i", str(inp), "-o", str(tmp_path / "out"),
                             "--workers", "2"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    victim = wait_for_pause(flag, proc)
    os.kill(victim, signal.SIGKILL)
    flag.unlink()
    out, err = proc.communicate(timeout=300)
    assert victim is not None and proc.returncode == 1, err
    assert "ended by SIGKILL (killed: out of memory?)" in err and "Traceback" not in err
    done = sorted(p.name for p in (tmp_path / "out").glob("*.npz"))
    assert len(done) == len(CASES) - 1  # every case but the killed one, with a replaced worker
    assert "3 segmented, 1 failed" in out
