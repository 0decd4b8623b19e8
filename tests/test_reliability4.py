"""The fourth hostile round (issue 44): each test fails on 36dbe6f and passes now. Lost work (an output over its
input, another tab's undo, names lost to a full disk, two runs' books, Save during a job or of an untouched case),
security (formulas in measurements.csv, upload bombs and floods of the protocol server), crashes and leaks (the
process's own cgroup, orphaned workers, encoder sessions past the memory, files that are FIFOs or devices, a
killed setup's temporary file) and unclear messages. Memory bounds are peaks measured in a subprocess; nothing is
timed."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import litemedsam
from conftest import REPO, wait_for_pause
from litemedsam.core.errors import CaseError
from tests import test_serve

CASE_2D = "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz"
CASE_3D = "3DBox_MR_pyradiomics_brain1.npz"
LESION = "3DBox_CT_CT_Lesion_000001_02_01_008-023.npz"
served = test_serve.served  # the browser app's server over dev cases (a fixture)


def cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "litemedsam", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=timeout, stdin=subprocess.DEVNULL)


def ct_nifti(path: Path) -> Path:
    import nibabel as nib

    volume = np.random.default_rng(0).integers(-1000, 400, (40, 40, 6)).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    return path


# -- lost work --

@pytest.mark.parametrize("how", ["the same path", "a symbolic link", "a hard link"])
def test_the_api_never_writes_its_output_over_its_input(tmp_path, how):
    """1: segment("ct.nii.gz", boxes, output="ct.nii.gz") replaced the CT with its label map."""
    image = ct_nifti(tmp_path / "ct.nii.gz")
    before = image.read_bytes()
    target = {"the same path": image, "a symbolic link": tmp_path / "out.nii.gz", "a hard link": tmp_path / "h.nii.gz"}[
        how
    ]
    if how == "a symbolic link":
        target.symlink_to(image)
    elif how == "a hard link":
        os.link(image, target)
    with pytest.raises(CaseError, match="is the input file itself"):
        litemedsam.segment(str(image), [5, 5, 1, 30, 30, 4], output=target)
    assert image.read_bytes() == before


def test_a_path_with_a_nul_is_refused_in_words(tmp_path):
    with pytest.raises(CaseError, match="not a path"):
        litemedsam.segment(str(tmp_path / "ct\0.nii.gz"), [5, 5, 1, 30, 30, 4])


def tab(name: str) -> dict:
    return {"X-Litemedsam": "1", "X-Litemedsam-Tab": name}


def brush(client, doc, label, at, who, radius=3):
    r = client.post(f"/api/doc/{doc['id']}/brush", json={"z": doc["depth"] // 2, "points": [list(at)],
                                                          "radius": radius, "label": label}, headers=tab(who))
    assert r.status_code == 200, r.text
    return r.json()


def step(client, doc, action, who):
    r = client.post(f"/api/doc/{doc['id']}/{action}", json={}, headers=tab(who))
    assert r.status_code == 200, r.text
    return r.json()


def test_undo_takes_back_the_tabs_own_edits_and_respects_locks(served):
    """2: tab B's Undo took back tab A's last stroke, even on an object A had locked, and A was told nothing."""
    from tests.test_serve import labels, open_case

    a = open_case(served, CASE_3D)
    b = open_case(served, CASE_3D)
    brush(served, a, 1, (40, 40), "A")
    brush(served, b, 2, (90, 90), "B")
    brush(served, a, 1, (60, 60), "A")  # A's is the last edit
    undone = step(served, b, "undo", "B")
    assert undone["undone"] and {o["label"] for o in undone["objects"]} == {1}  # B's own object, not A's stroke
    got = labels(served, a)
    assert got[a["depth"] // 2, 60, 60] == 1 and got[a["depth"] // 2, 40, 40] == 1
    assert not step(served, b, "undo", "B")["undone"]  # B has nothing left of its own
    assert step(served, b, "redo", "B")["redone"]  # B's object again
    # A locks its object; B's stroke over it is held back, and an undo of A's never changes what B drew since
    r = served.post(f"/api/doc/{a['id']}/guard", json={"over": "all", "locked": [1]}, headers=tab("A"))
    assert r.status_code == 200, r.text
    brush(served, a, 3, (40, 40), "A", radius=6)  # around the locked stroke: held where it is label 1
    brush(served, b, 4, (45, 40), "B", radius=1)  # over A's object 3, beside the locked one
    undone = step(served, a, "undo", "A")  # A's object 3: where B drew 4 since, B's voxels stay
    assert undone["undone"] and undone["change"]["held"] > 0
    got = labels(served, a)
    z = a["depth"] // 2
    assert got[z, 40, 40] == 1 and 3 not in got and got[z, 40, 45] == 4  # the locked object untouched, B's edit kept


def test_a_name_given_while_the_disk_is_full_is_kept_by_the_next_edit(served, monkeypatch):
    """3: a name given while the disk was full was lost after a restart (the next edit cleared the warning and the
    names file was never rewritten)."""
    from litemedsam.core.errors import OutputError
    from litemedsam.serve import interactive
    from tests.test_serve import open_case

    doc = open_case(served, CASE_3D)
    brush(served, doc, 1, (40, 40), "A")
    real = interactive.write_names

    def full(path, names):
        raise OutputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(interactive, "write_names", full)
    r = served.post(f"/api/doc/{doc['id']}/objects/1", json={"name": "liver"}, headers=tab("A"))
    assert r.status_code == 200 and "names could not be kept" in r.json()["problem"], r.text
    brush(served, doc, 1, (90, 90), "A")  # still full: still said
    assert "names could not be kept" in brush(served, doc, 1, (95, 95), "A")["problem"]
    monkeypatch.setattr(interactive, "write_names", real)  # room again: the next edit writes the names
    assert brush(served, doc, 1, (100, 100), "A")["problem"] == ""
    names = interactive.read_names(interactive.names_work_file(served.server.output_dir / CASE_3D))
    assert names[1]["name"] == "liver"


def test_save_waits_for_a_running_job_and_skips_an_untouched_case(served, monkeypatch):
    """5: Save during a 3D propagation answered "saved" without the object; an untouched case was saved empty."""
    from litemedsam.serve.interactive import Document
    from tests.test_serve import finish, open_case

    doc = open_case(served, CASE_2D)
    r = served.post(f"/api/doc/{doc['id']}/save", json={}, headers=tab("A"))
    assert r.status_code == 409 and "nothing is drawn" in r.json()["error"]
    assert not (served.server.output_dir / CASE_2D).exists()
    r = served.post(f"/api/doc/{doc['id']}/save", json={"empty": True}, headers=tab("A"))
    assert r.status_code == 200 and (served.server.output_dir / CASE_2D).exists()  # asked for: saved empty

    vol = open_case(served, CASE_3D)
    release, started = threading.Event(), threading.Event()
    real = Document.box_mask

    def held(self, *args, **kwargs):
        started.set()
        release.wait(60)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Document, "box_mask", held)
    r = served.post(f"/api/doc/{vol['id']}/box", json={"box": [30, 30, 120, 120], "z": vol["depth"] // 2,
                                                        "z_range": [0, vol["depth"] - 1]}, headers=tab("A"))
    assert r.status_code == 200 and r.json()["job"], r.text
    assert started.wait(60)
    r = served.post(f"/api/doc/{vol['id']}/save", json={}, headers=tab("A"))
    assert r.status_code == 409 and "running" in r.json()["error"]
    assert not (served.server.output_dir / CASE_3D).exists()
    release.set()
    assert finish(served, vol)["state"] == "done"
    r = served.post(f"/api/doc/{vol['id']}/save", json={}, headers=tab("A"))
    assert r.status_code == 200, r.text
    assert (np.load(served.server.output_dir / CASE_3D)["segs"] == 1).any()


def test_a_second_run_into_the_folder_is_refused_and_runs_after_each_other_keep_every_row(
        dev_data, models_ready, tmp_path):
    """4: two infer runs into one output folder: every output there, but efficiency.csv and run.json kept only the
    last run's rows."""
    from tests.test_infer_real import link_cases

    first = link_cases(dev_data, [CASE_2D], tmp_path / "first")
    second = link_cases(dev_data, ["2DBox_CT_SAMMed2D_s0114_111.npz"], tmp_path / "second")
    out = tmp_path / "out"
    assert cli("infer", "-i", first, "-o", out).returncode == 0
    assert cli("infer", "-i", second, "-o", out).returncode == 0
    rows = (out / "efficiency.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == sorted([CASE_2D, "2DBox_CT_SAMMed2D_s0114_111.npz"])
    record = json.loads((out / "run.json").read_text())
    assert sorted(c["case"] for c in record["cases"]) == sorted([CASE_2D, "2DBox_CT_SAMMed2D_s0114_111.npz"])
    # a run holding the folder (paused mid-case): a second run is refused, in words, and writes nothing
    flag = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-m", "litemedsam", "infer", "-i", str(first), "-o", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "LITEMEDSAM_PAUSE_IN": f"{CASE_2D}:{flag}"})
    try:
        wait_for_pause(flag, proc)
        done = cli("infer", "-i", second, "-o", out)
        assert done.returncode == 2 and "is in use by another litemedsam run" in done.stderr, done.stderr
    finally:
        flag.unlink(missing_ok=True)
        proc.communicate(timeout=300)
    assert proc.returncode == 0


# -- security --

def test_names_that_a_spreadsheet_would_run_are_kept_as_text():
    """6: names starting with =, +, -, @ went unescaped into measurements.csv (OWASP's CSV injection)."""
    from litemedsam.core.measure import COLUMNS, to_csv

    rows = [{**dict.fromkeys(COLUMNS, 1), "label": k, "name": name, "mean": -3.5}
            for k, name in enumerate(["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "liver"], 1)]
    import csv
    import io

    read = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [r["name"] for r in read] == ["'=HYPERLINK(\"http://x\")", "'+1+2", "'-2+3", "'@SUM(A1)", "'\tx", "liver"]
    assert all(r["mean"] == "-3.5" for r in read)  # numbers stay numbers


@pytest.fixture
def protocol_server(models_ready, tmp_path):
    from evaluation.served import Served

    (tmp_path / "cwd").mkdir()
    server = Served(tmp_path / "cwd", "--max-sessions", "2", "--memory", "3072")
    yield server
    _, err = server.close()
    assert "Traceback" not in err, err


def claim(server) -> dict:
    import httpx

    r = httpx.post(server.url + "/claim", headers={"Authorization": f"Bearer {server.key}"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {server.key}", "X-Lease-Token": r.json()["lease_token"]}


def test_a_tiny_upload_that_declares_a_huge_image_is_refused_from_its_header(protocol_server):
    """7: a 145-byte /set_image body decompressed to a 2 GiB image and killed the server in a 3 GiB cgroup."""
    import httpx
    from nnInteractive.inference.remote.serialization import pack_array

    small = bytearray(pack_array(np.zeros((1, 2, 2, 2), np.uint8)))
    from litemedsam.serve import wire

    _, _, at = wire.header(bytes(small))
    small[at - 24:at] = np.array([2048, 1024, 1024], "<i8").tobytes()  # declares 1 x 2048 x 1024 x 1024: 2 GiB
    headers = claim(protocol_server)
    r = httpx.post(protocol_server.url + "/set_image", content=bytes(small), timeout=120,
                   headers={**headers, "X-Meta": json.dumps({"image_properties": {}})})
    assert r.status_code == 413 and "of memory" in r.json()["detail"] and "--memory" in r.json()["detail"], r.text
    assert protocol_server.peak_mb() < 1000  # never allocated
    assert httpx.get(protocol_server.url + "/healthz").status_code == 200


def test_queued_points_and_waiting_requests_are_bounded(protocol_server, dev_data):
    """8 and 9: 20,000 queued points grew the server to 2.7 GB; one lease's 60 queued requests made another
    lease's trivial request wait 100 s. Now a lease queues at most 64 interactions and 4 requests wait behind its
    running one (429 past that), waiting without a thread, and the model is taken first come first."""
    import httpx

    image = np.load(dev_data / "imgs" / LESION)["imgs"]
    a, b = claim(protocol_server), claim(protocol_server)
    for headers in (a, b):
        session_image(protocol_server, headers, image)
    z = image.shape[0] // 2
    point = {"coordinates": [z, image.shape[1] // 2, image.shape[2] // 2], "include_interaction": True,
             "run_prediction": False}
    answers = [httpx.post(protocol_server.url + "/add_point_interaction", json=point, headers=a, timeout=60)
               for _ in range(65)]
    assert [r.status_code for r in answers[:64]] == [200] * 64
    assert answers[64].status_code == 400 and "at most 64" in answers[64].json()["detail"]
    assert httpx.post(protocol_server.url + "/reset_interactions", headers=a, timeout=60).status_code == 200
    # lease A floods the server with clicks that run the model; lease B's request is answered meanwhile
    finished: list = []

    def click(n):
        r = httpx.post(protocol_server.url + "/add_point_interaction", timeout=600, headers=a,
                       json={**point, "coordinates": [z, 20 + n % 40, 20 + n % 30], "run_prediction": True})
        finished.append(("A", r.status_code))

    threads = [threading.Thread(target=click, args=(n,)) for n in range(60)]
    for t in threads:
        t.start()
    r = httpx.post(protocol_server.url + "/set_target_buffer", headers=b, timeout=600,
                   json={"shape": list(image.shape), "dtype": "uint8"})
    finished.append(("B", r.status_code))
    for t in threads:
        t.join()
    assert r.status_code == 200
    a_done = [code for who, code in finished if who == "A"]
    assert a_done.count(429) >= 50 and a_done.count(200) >= 1
    assert finished.index(("B", 200)) < len(finished) - 1  # B was not served after all of A's clicks
    assert protocol_server.peak_mb() < 3072


def session_image(server, headers, image):
    import httpx
    from nnInteractive.inference.remote.serialization import pack_array

    r = httpx.post(server.url + "/set_image", content=pack_array(image[None]), timeout=120,
                   headers={**headers, "X-Meta": json.dumps({"image_properties": {"spacing": [1, 1, 1]}})})
    assert r.status_code == 200, r.text
    r = httpx.post(server.url + "/set_target_buffer", json={"shape": list(image.shape), "dtype": "uint8"},
                   headers=headers, timeout=60)
    assert r.status_code == 200, r.text


def test_unknown_modalities_and_nan_initial_segmentations_are_refused(protocol_server, dev_data):
    """Unclear messages: an unknown image_properties modality was accepted silently and changed the mask; a NaN
    initial segmentation made every voxel the object."""
    import httpx
    from nnInteractive.inference.remote.serialization import pack_array

    image = np.load(dev_data / "imgs" / LESION)["imgs"]
    headers = claim(protocol_server)
    r = httpx.post(protocol_server.url + "/set_image", content=pack_array(image[None]), timeout=120,
                   headers={**headers, "X-Meta": json.dumps({"image_properties": {"modality": "Sonar"}})})
    assert r.status_code == 400 and "'Sonar' is not a modality" in r.json()["detail"], r.text
    session_image(protocol_server, headers, image)
    seg = np.full(image.shape, np.nan, np.float32)
    r = httpx.post(protocol_server.url + "/add_initial_seg_interaction", content=pack_array(seg), timeout=60,
                   headers={**headers, "X-Meta": json.dumps({"run_prediction": False})})
    assert r.status_code == 400 and "NaN" in r.json()["detail"], r.text


def test_points_of_an_object_are_capped():
    """8: the points of one object are capped (the earlier ones are not copied per point either)."""
    from litemedsam.core.limits import MAX_POINTS
    from litemedsam.serve.http import Refused
    from litemedsam.serve.nninteractive import Lease, Protocol, ProtocolOptions

    class Scene:
        labels = np.zeros((4, 8, 8), np.uint16)

    protocol = Protocol(ProtocolOptions("k" * 16), None, None, None)
    lease = Lease("t", scene=Scene(), target=((4, 8, 8), np.dtype(np.uint8)))
    lease.clicks = [(0, 0, 0)] * MAX_POINTS
    with pytest.raises(Refused, match=f"at most {MAX_POINTS}"):
        protocol.point_action(lease, [1, 2, 3], True)


# -- crashes and leaks --

def test_workers_end_when_infer_is_killed(dev_data, models_ready, tmp_path):
    """11: after kill -9 of infer --workers 2 both workers lived on (>600 s, ~1.1 GB)."""
    from tests.test_infer_real import link_cases

    names = [CASE_2D, "2DBox_CT_SAMMed2D_s0114_111.npz", CASE_3D]
    inp = link_cases(dev_data, names, tmp_path / "in")
    flag = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-m", "litemedsam", "infer", "-i", str(inp), "-o", str(tmp_path / "out"),
                             "--workers", "2"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "LITEMEDSAM_PAUSE_IN": f"{CASE_3D}:{flag}"})
    worker = wait_for_pause(flag, proc)
    workers = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert worker in workers and len(workers) == 2
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the event itself: the workers' exit
    flag.unlink(missing_ok=True)
    assert not any(alive(pid) for pid in workers)
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_predictor_bounds_points_and_answers_no_objects(models_ready):
    """12 and the unclear messages: Predictor.predict with 20,000 points was OOM-killed in 3 GiB; zero objects gave
    a raw ONNX Runtime error."""
    predictor = litemedsam.Predictor()
    predictor.set_image(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    with pytest.raises(CaseError, match="20000 points per object; at most 1000"):
        predictor.predict(points=np.zeros((1, 20000, 2)), point_labels=np.ones((1, 20000)))
    masks, scores, logits = predictor.predict(points=np.zeros((0, 1, 2)), point_labels=np.zeros((0, 1)))
    assert masks.shape == (0, 64, 64) and scores.shape == (0,) and logits.shape[0] == 0


@pytest.mark.parametrize("what", ["--api-key-file", "--labels"])
@pytest.mark.parametrize("kind", ["a FIFO", "/dev/zero"])
def test_key_and_label_files_are_regular_small_files(tmp_path, what, kind):
    """13: --api-key-file or --labels at a FIFO hung at start; at /dev/zero ran out of memory."""
    path = tmp_path / "file"
    if kind == "a FIFO":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    args = ["serve", "nninteractive", "--api-key-file", path] if what == "--api-key-file" \
        else ["serve", "app", str(tmp_path), "-o", tmp_path / "segs", "--labels", path]
    done = cli(*args, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("a FIFO, not a regular file" if kind == "a FIFO" else "a device or special file") in done.stderr


def test_a_killed_setup_leaves_no_temporary_file_and_a_bad_models_folder_is_said(models_ready, tmp_path):
    """14 and the unclear messages: SIGKILL during models setup left a 23 MB .tmp that nothing removed; models
    setup with LITEMEDSAM_WORK_DIR a file or a link loop printed a traceback."""
    from litemedsam.models.registry import MODELS, work_dir

    models = tmp_path / "models"
    models.mkdir()
    files = {entry.file for name in ("litemedsam", "litemedsam-int8") for entry in MODELS[name].files}
    for name in files | {"lite_medsam.pth"}:
        (models / name).symlink_to(work_dir() / name)
    stale = models / ".litemedsam-99999999-abc.tmp"
    stale.write_bytes(b"partial" * 1000)
    env = {"LITEMEDSAM_WORK_DIR": str(models), "LITEMEDSAM_CACHE_DIR": "off", "LITEMEDSAM_SLICE_SESSIONS": "1"}
    done = cli("models", "setup", env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and "removed 1 temporary file(s)" in done.stderr
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for bad in (tmp_path / "a-file", tmp_path / "loop"):
        done = cli("models", "setup", env={"LITEMEDSAM_WORK_DIR": str(bad)}, timeout=60)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert f"the models folder {bad}" in done.stderr and "LITEMEDSAM_WORK_DIR" in done.stderr


def test_serve_checks_slice_sessions_at_start(tmp_path):
    """Unclear messages: serve started with LITEMEDSAM_SLICE_SESSIONS=abc and failed only at the first 3D box."""
    done = cli(
        "serve", "app", str(tmp_path), "-o", tmp_path / "segs", env={"LITEMEDSAM_SLICE_SESSIONS": "abc"}, timeout=60
    )
    assert done.returncode == 2 and "LITEMEDSAM_SLICE_SESSIONS='abc' is not a number of encoder sessions" in done.stderr


def test_a_finite_image_of_huge_values_is_read():
    """Unclear messages: a finite image of +-1e308 was refused as "NaN or infinite"."""
    from litemedsam.io.intensity import to_uint8

    image = np.zeros((8, 8))
    image[:4], image[4:6], image[6:, :4] = 1e308, -1e308, 5.0
    assert to_uint8(image, None)[0, 0] == 255 and to_uint8(image, None)[5, 0] == 0
    assert to_uint8(image, "CT")[0, 0] == 255
    with pytest.raises(CaseError, match="NaN or infinite"):
        to_uint8(np.array([[np.inf, 0.0]]), None)


def test_many_slice_sessions_keep_to_the_memory_of_a_child_cgroup(dev_data, models_ready, tmp_path):
    """10 and 12: infer in a child cgroup (Slurm's, systemd's layout) read the root's memory; 64 forced encoder
    sessions were OOM-killed in 3 GiB. Run for real in a 3 GiB child of this process's cgroup where one can be
    made (root)."""
    from tests.test_infer_real import link_cases

    child = make_child_cgroup(3 << 30)
    inp = link_cases(dev_data, [LESION], tmp_path / "in")
    code = ("import os, sys, runpy; open(sys.argv[1], 'w').write(str(os.getpid()));"
            "sys.argv = ['litemedsam', *sys.argv[2:]]; runpy.run_module('litemedsam', run_name='__main__')")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(child / "cgroup.procs"), "infer", "-i", str(inp),
                               "-o", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=600,
                              env={**os.environ, "LITEMEDSAM_SLICE_SESSIONS": "64"})
        assert done.returncode == 0, done.stderr
        record = json.loads((tmp_path / "out" / "run.json").read_text())
        assert "capped to" in record["slice_encoding"]
    finally:
        remove_cgroup(child)


def make_child_cgroup(limit: int) -> Path:
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if "memory" in line.split(":")[1].split(",")]
    own = Path("/sys/fs/cgroup/memory") / v1[0].lstrip("/") if v1 else \
        Path("/sys/fs/cgroup") / lines[-1].split(":", 2)[2].lstrip("/")
    child = own / f"litemedsam-test-{os.getpid()}-{time.monotonic_ns()}"
    try:
        child.mkdir()
        (child / ("memory.limit_in_bytes" if v1 else "memory.max")).write_text(str(limit))
    except OSError as e:
        pytest.skip(f"cannot make a child cgroup here ({e.strerror})")
    return child


def remove_cgroup(child: Path) -> None:
    for _ in range(100):
        try:
            child.rmdir()
            return
        except OSError:
            time.sleep(0.05)  # its last process is still being reaped

