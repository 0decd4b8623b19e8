"""litemedsam serve when things go wrong (issue 34): two tabs on one case, a disk that fills up mid-edit, a damaged
or planted work file, a work folder that is a link, open to all or unreadable, documents closed to make room, and
hostile numbers in URLs. Each test fails on 6df6ef9 (before the fixes). Starlette's test client, real app."""
import errno
import os
import threading

import numpy as np
import pytest

from tests.test_infer_real import link_cases
from tests.test_serve import CASE_2D, CASE_3D, WRITE, labels, open_case

pytest.importorskip("starlette", reason="Starlette is not installed (litemedsam[serve])")
pytest.importorskip("httpx2", reason="httpx2 (Starlette's test client) is not installed")

CASES_2D = ["2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz", "2DBox_CT_SAMMed2D_s0114_111.npz",
            "2DBox_US_MedScribble-CAMUS_train-patient0173_axis0_midslice.npz"]


@pytest.fixture
def client(dev_data, models_ready, tmp_path):
    """A server of a 3D case and three 2D cases; ``client.restart()`` gives a new server on the same folders (the
    server stopped and started again: documents are read from the disk)."""
    from starlette.testclient import TestClient

    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.methods.router import Router
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.serve.web.app import Server, make_app

    folder = link_cases(dev_data, [CASE_3D, *CASES_2D], tmp_path / "in")
    segmenters, made = Segmenters(), []

    def start():
        server = Server(folder, tmp_path / "segs", BoxPrompting(Router.load(None)), segmenters, 64 << 20, 1 << 20)
        made.append(server)
        c = TestClient(make_app(server), base_url="http://127.0.0.1:8765",
                       headers={"X-Litemedsam-Token": server.token})
        c.server, c.folder, c.restart = server, folder, start
        return c

    yield start()
    for server in made:
        server.close()


def stroke(client, doc, label, at=(40, 40), z=None):
    z = doc["depth"] // 2 if z is None else z
    r = client.post(f"/api/doc/{doc['id']}/brush", json={"z": z, "points": [list(at)], "radius": 3, "label": label},
                    headers=WRITE)
    assert r.status_code == 200, r.text
    return r.json()


def test_two_tabs_on_one_case_share_its_document_and_every_save_keeps_both(client):
    """T33/T34: two tabs got two documents of one case: Save A then Save B kept only B's stroke, and A's Save
    deleted the work file holding B's unsaved edits. Now a case is one document whoever opens it."""
    a, b = open_case(client, CASE_3D), open_case(client, CASE_3D)
    assert a["id"] == b["id"]
    stroke(client, a, 1, (40, 40))
    stroke(client, b, 2, (90, 90))
    client.post(f"/api/doc/{a['id']}/save", json={}, headers=WRITE)
    saved = np.load(client.server.output_dir / CASE_3D)["segs"]
    assert {1, 2} <= set(np.unique(saved).tolist())
    stroke(client, b, 3, (120, 60))  # B's unsaved edit, then A saves again and the server restarts
    client.post(f"/api/doc/{a['id']}/save", json={}, headers=WRITE)
    again = client.restart()
    assert {1, 2, 3} <= set(np.unique(labels(again, open_case(again, CASE_3D))).tolist())
    # two tabs opening at the same moment get one document too: the first reads the case until the second has
    # come to open it (and waits behind it), so the two opens overlap whatever the threads' timing
    import litemedsam.serve.web.server as server_module

    path, keys, came = client.folder / CASES_2D[0], [], threading.Event()
    opening, read = client.server.opening, server_module.open_case

    class Watched:
        def __enter__(self):
            if not opening.acquire(blocking=False):
                came.set()
                opening.acquire()

        def __exit__(self, *exc):
            opening.release()

    def slow_read(*args):
        assert came.wait(60), "the second open never came"
        return read(*args)
    client.server.opening = Watched()
    server_module.open_case = slow_read
    try:
        threads = [threading.Thread(target=lambda: keys.append(client.server.open(path, CASES_2D[0])))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server_module.open_case, client.server.opening = read, opening
    assert len(keys) == 2 and len(set(keys)) == 1 and came.is_set()


def test_a_disk_full_mid_edit_leaves_no_torn_record_and_loses_nothing(client, monkeypatch):
    """T31: a failed append left a partial record that shifted the parsing of the ones after it: a later edit was
    reported kept and was lost on reopening. Now the file is cut back, the failure said, and the next edit writes
    the work file whole."""
    from litemedsam.serve import interactive

    doc = open_case(client, CASE_3D)
    stroke(client, doc, 1, (40, 40))
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(interactive.os, "write", half_then_full)
    failed = stroke(client, doc, 2, (90, 90))
    assert "could not be kept" in failed["problem"]
    monkeypatch.setattr(interactive.os, "write", real_write)
    assert stroke(client, doc, 3, (120, 60))["problem"] == ""
    expected = labels(client, doc)
    again = client.restart()
    reopened = open_case(again, CASE_3D)
    assert reopened["unsaved"] and np.array_equal(labels(again, reopened), expected)


@pytest.mark.parametrize("damage", ["garbage", "off the image", "a link"])
def test_a_damaged_work_file_keeps_every_valid_edit_and_is_moved_aside(client, damage):
    """T27/T29: 20 garbage bytes, or one record with an index off the image, made the server delete the whole work
    file silently and show the case as saved. Now every valid record is kept, the file is moved aside and the page
    says so; a work file planted as a link is moved aside (never followed)."""
    from litemedsam.serve.interactive import edit_record, work_file

    doc = open_case(client, CASE_3D)
    stroke(client, doc, 1, (40, 40))
    stroke(client, doc, 2, (90, 90))
    expected = labels(client, doc)
    work = work_file(client.server.output_dir / CASE_3D)
    if damage == "garbage":
        work.write_bytes(work.read_bytes() + b"\x13" * 20)
    elif damage == "off the image":
        work.write_bytes(work.read_bytes() + edit_record([expected.size + 5], [7]))
    else:
        (work.parent / "elsewhere").write_bytes(b"")
        work.unlink()
        work.symlink_to(work.parent / "elsewhere")
        expected[...] = 0
    again = client.restart()
    reopened = open_case(again, CASE_3D)
    assert np.array_equal(labels(again, reopened), expected)
    assert "damaged" in reopened["notice"] and (work.parent / f"{work.name}.damaged-1").is_symlink() == (
        damage == "a link"
    )
    assert (work.parent / f"{work.name}.damaged-1").exists() or damage == "a link"
    assert reopened["unsaved"] == (damage != "a link")
    assert work.is_file() and not work.is_symlink() if damage != "a link" else not work.exists()


def test_a_document_whose_edits_are_not_on_disk_is_never_closed(client, monkeypatch):
    """T32: a document whose edits could not be written was closed when 4 other cases were opened, then reopened
    empty and "saved". Now it stays open (its edits in memory) whatever else is opened."""
    from litemedsam.serve import interactive

    doc = open_case(client, CASE_3D)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(interactive.os, "write", full)
    assert "could not be kept" in stroke(client, doc, 1, (40, 40))["problem"]
    for name in CASES_2D:
        open_case(client, name)
    for name in CASES_2D:  # reopened: each is still (or again) one document
        open_case(client, name)
    client.server.add(client.server.docs[next(iter(client.server.docs))].doc, "x")  # a fifth, sixth ...
    r = client.get(f"/api/doc/{doc['id']}")
    assert r.status_code == 200 and r.json()["unsaved"] and r.json()["objects"][0]["label"] == 1


def test_the_work_folder_is_private_never_a_link_and_unreadable_opens_read_only(client, tmp_path, monkeypatch):
    """T24: a symlinked .litemedsam-work was followed (edits written outside -o); T25: a 0777 work folder stayed
    0777; T26: a work folder the server cannot read made every open of the case a 500."""
    from litemedsam.serve import interactive

    work = client.server.output_dir / interactive.WORK_FOLDER
    outside = tmp_path / "outside"
    outside.mkdir()
    client.server.output_dir.mkdir(parents=True)
    work.symlink_to(outside)
    doc = open_case(client, CASE_3D)
    assert "could not be kept" in stroke(client, doc, 1)["problem"] and not any(outside.iterdir())
    work.unlink()
    work.mkdir()
    work.chmod(0o777)
    assert stroke(client, doc, 2)["problem"] == "" and (work.stat().st_mode & 0o777) == 0o700

    def unreadable(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(interactive, "read_work", unreadable)
    again = client.restart()
    shown = open_case(again, CASE_3D)
    assert "read-only" in shown["readonly"]
    r = again.post(f"/api/doc/{shown['id']}/brush", json={"z": 1, "points": [[5, 5]], "radius": 2, "label": 4},
                   headers=WRITE)
    assert r.status_code == 422 and "read-only" in r.json()["error"]


def test_urls_with_huge_numbers_and_the_background_as_an_object_are_refused(client):
    """T17: 5,000-digit numbers in URLs gave 500s and tracebacks; T16: DELETE /objects/0 "erased" the background
    (10 bytes per voxel appended each time); T20: past label 65535 a new object had no label though others were
    free."""
    doc = open_case(client, CASE_2D)
    url, huge = f"/api/doc/{doc['id']}", "9" * 5000
    for path in (f"{url}/image/{huge}", f"{url}/labels/{huge}", f"{url}/value?z={huge}&y=1&x=1"):
        r = client.get(path)
        assert r.status_code in (400, 404) and len(r.text) < 400, path
    for label in ("0", huge, "-1", "65536"):
        assert client.request("DELETE", f"{url}/objects/{label}", json={}, headers=WRITE).status_code == 400, label
        assert client.post(f"{url}/objects/{label}", json={"name": "x"}, headers=WRITE).status_code == 400, label
    stroke(client, doc, 65535, (40, 40), z=0)
    assert stroke(client, doc, None, (90, 90), z=0)["label"] == 1
