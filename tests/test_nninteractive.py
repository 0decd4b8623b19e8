"""``litemedsam serve nninteractive`` driven by the real ``nninteractive-client`` (the client 3D Slicer's
and napari's nnInteractive tools use), as a user starts it: the CLI in its own process, the key in the
environment. A box on one slice gives the 3D object, points the voxels ``infer`` gives for the same clicks and
previous mask, undo and reset take edits back, a second target buffer is a new object, leases are capped and
expire, a wrong key is refused, and hostile bodies get a 4xx that says what is wrong (never a 500) while the
server keeps serving. The wire format's checks run without models (tier fast)."""
import struct
import time

import numpy as np
import pytest

blosc2 = pytest.importorskip("blosc2", reason="blosc2 is not installed (litemedsam[serve])")
pytest.importorskip("starlette", reason="Starlette is not installed (litemedsam[serve])")
remote = pytest.importorskip("nnInteractive.inference.remote", reason="nninteractive-client is not installed")
import httpx  # noqa: E402  (the client's dependency)
from nnInteractive.inference.remote.serialization import pack_array, unpack_array  # noqa: E402

from evaluation.served import KEY, Served, largest_slice_box, slice_box  # noqa: E402
from litemedsam.core.masks import dice
from litemedsam.serve import wire  # noqa: E402

CASE = "3DBox_CT_CT_Lesion_000001_02_01_008-023.npz"  # 16 slices, one lesion


# -- the wire format (fast) --

def test_wire_format_reads_the_clients_arrays_and_the_client_reads_ours():
    for a in (np.random.rand(2, 3, 4, 5).astype(np.float32), np.arange(60, dtype=np.int16).reshape(3, 4, 5),
              np.random.rand(6, 7, 8) > 0.5, np.zeros((1, 9, 9, 9), np.uint8)):
        back = wire.unpack(pack_array(a), 1 << 20)
        assert back.dtype == a.dtype and np.array_equal(back, a)
        mine = unpack_array(wire.pack(a))
        assert mine.dtype == a.dtype and np.array_equal(mine, a)


def test_wire_format_refuses_hostile_bodies_with_a_reason():
    good = pack_array(np.ones((4, 4, 4), np.uint8))
    huge = bytearray(good)
    struct.pack_into("<3q", huge, 8 + len("uint8"), 1 << 20, 1 << 20, 1 << 20)  # 1 PB declared
    cases = {
        b"": "header",
        b"XXXX" + good[4:]: "NNIA",
        good[:-5]: "chunk",
        bytes(huge): "at most",
        good[:8 + 5] + b"\x00" * 24 + good[8 + 5 + 24:]: "chunks",  # shape 0 x 0 x 0 with a chunk
        good[:-20] + b"\xff" * 20: "chunk",  # a damaged frame
        good + b"tail": "after",
    }
    bad_dtype = bytearray(good)
    bad_dtype[8:13] = b"objec"  # not a numeric dtype name
    cases[bytes(bad_dtype)] = "dtype"
    for body, said in cases.items():
        with pytest.raises(ValueError, match=said):
            wire.unpack(body, 1 << 20)


# -- the server, as users run it (models) --

@pytest.fixture
def served(models_ready, tmp_path):
    (tmp_path / "cwd").mkdir()
    server = Served(tmp_path / "cwd", "--max-sessions", "2")
    yield server
    _, err = server.close()
    assert "Traceback" not in err and "internal error" not in err, err
    assert list((tmp_path / "cwd").iterdir()) == []  # the server writes nothing


@pytest.fixture(scope="module")
def lesion(dev_data):
    data = np.load(dev_data / "imgs" / CASE)
    gts = np.load(dev_data / "gts" / CASE)["gts"]
    return data["imgs"], list(data["spacing"][::-1]), gts == 1  # spacing as the array's axes: z, y, x


def test_box_points_undo_reset_through_the_client(served, lesion):
    image, spacing, gt = lesion
    s = served.session()
    assert s.supported_interactions == {"points": True, "bbox2d": True, "bbox3d": True, "lasso": True,
                                        "scribble": False}
    assert s.supports_undo and s.ping()
    s.set_image(image[None], {"spacing": spacing})
    assert s.original_image_shape == (1, *image.shape)
    buf = np.zeros(image.shape, np.uint8)
    s.set_target_buffer(buf)
    changed = s.add_bbox_interaction(largest_slice_box(gt), include_interaction=True)
    assert changed is not None and buf.any()
    assert dice(buf > 0, gt) > 0.8  # no z-range given: the object found its own ends
    assert buf[:, :, :changed[2][0]].sum() == 0  # nothing outside the region the server said it changed
    box_result = buf.copy()
    centre = [int(np.mean(w)) for w in np.nonzero(gt & (buf > 0))]
    s.add_point_interaction(centre, include_interaction=False)  # a background click in the object
    assert buf[tuple(centre)] == 0 and (buf != box_result).any()
    assert s.undo() is True
    assert np.array_equal(buf, box_result)  # the client's buffer is the box's again
    s.reset_interactions()
    assert not buf.any()
    assert s.add_point_interaction(centre, include_interaction=True) is not None  # a first click builds an object
    assert buf[tuple(centre)] == 1 and dice(buf > 0, gt) > 0.5
    s.close()


def test_points_give_the_voxels_infer_gives_for_the_same_clicks_and_previous_mask(served, lesion, dev_data,
                                                                                   tmp_path):
    from evaluation.interactive import InProcess, boxes_2025, next_click, write_case

    image, spacing, gt = lesion
    gts = gt.astype(np.uint8)
    infer = InProcess()
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    write_case(folder / CASE, image, spacing[::-1], boxes_2025(gts), None, None, None)
    assert infer(folder, out)
    previous = np.load(out / CASE)["segs"]
    s = served.session()
    s.set_image(image[None], {"spacing": spacing})
    buf = np.zeros(image.shape, np.uint8)
    s.set_target_buffer(buf)
    s.add_initial_seg_interaction(previous.astype(np.uint8))
    assert np.array_equal(buf, previous)
    clicks, order = [{"fg": [], "bg": []}], [[]]
    for step in range(5):
        kind, at = next_click(previous, gts, 1)
        s.add_point_interaction(list(at), include_interaction=kind == "fg")
        clicks[0][kind].append(list(map(np.int64, at)))
        order[0].append(kind)
        write_case(folder / CASE, image, spacing[::-1], boxes_2025(gts), clicks, order, previous.astype(np.uint8))
        assert infer(folder, out)
        previous = np.load(out / CASE)["segs"]
        assert np.array_equal(buf, previous), f"step {step + 1}: {int((buf != previous).sum())} voxels differ"
    s.close()


def test_a_second_target_buffer_is_a_new_object_and_boxes_in_other_views(served, lesion):
    image, spacing, gt = lesion
    s = served.session()
    s.set_image(image[None], {"spacing": spacing})
    first = np.zeros(image.shape, np.uint8)
    s.set_target_buffer(first)
    s.add_bbox_interaction(largest_slice_box(gt), include_interaction=True)
    kept = first.copy()
    second = np.zeros(image.shape, np.uint8)
    s.set_target_buffer(second)
    s.add_bbox_interaction(slice_box(gt, axis=1), include_interaction=True)  # drawn on a coronal cut
    assert np.array_equal(first, kept)  # the first object is the client's now: untouched
    assert dice(second > 0, gt) > 0.6  # a coronal cut across 5 mm slices, resampled, propagated along y
    s.set_target_buffer(third := np.zeros(image.shape, np.int16))
    box3d = [[int(z.min()), int(z.max()) + 1] for z in np.nonzero(gt)]
    s.add_bbox_interaction(box3d, include_interaction=True)  # a 3D box: the object within its slices
    assert dice(third > 0, gt) > 0.8
    s.add_bbox_interaction(largest_slice_box(gt), include_interaction=False)  # an excluding box removes
    assert third.sum() < 0.5 * (gt.sum())
    lasso = np.zeros((1, *image.shape[1:]), np.uint8)
    k = int(np.argmax(gt.sum(axis=(1, 2))))
    lasso[0][gt[k]] = 1
    s.add_lasso_interaction(lasso, include_interaction=True, interaction_bbox=[[k, k + 1], [0, image.shape[1]],
                                                                              [0, image.shape[2]]])
    assert dice(third > 0, gt) > 0.8
    s.close()


def test_sessions_are_capped_and_a_wrong_key_is_refused(served, lesion):
    for key in ("wrong-key-0123456789", ""):
        with pytest.raises(httpx.HTTPStatusError) as e:
            served.session(key=key)
        assert e.value.response.status_code == 401
    a, b = served.session(), served.session()
    with pytest.raises(remote.ServerAtCapacityError):
        served.session()
    a.close()
    c = served.session()  # the released slot is free again
    b.close(), c.close()
    r = httpx.post(served.url + "/claim")  # no key at all
    assert r.status_code == 401 and "key" in r.json()["detail"]


def test_a_lease_expires(models_ready, tmp_path, lesion):
    server = Served(tmp_path, "--idle-timeout", "30", "--liveness-timeout", "1")
    try:
        s = server.session()  # heartbeats every 5 s: past the 1 s liveness timeout
        status = s.lease_status()
        assert 0 < status["remaining_seconds"] <= 30
        deadline = time.monotonic() + 60
        with pytest.raises(remote.SessionExpiredError):
            while time.monotonic() < deadline:
                s.lease_status()  # a probe touches no clock: the lease ends when its time is up
                time.sleep(0.05)
        s = server.session()  # a new one can be claimed
        s.close()
    finally:
        server.close()


def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(served, lesion):
    image, spacing, gt = lesion
    s = served.session()
    h = {"Authorization": f"Bearer {KEY}", "X-Lease-Token": s._lease_token}

    def post(path, expect, **kwargs):
        r = httpx.post(served.url + path, headers={**h, **kwargs.pop("headers", {})}, timeout=60, **kwargs)
        assert r.status_code == expect, (path, r.status_code, r.text)
        assert r.json()["detail"]
        return r.json()["detail"]

    assert "set_image" in post("/add_point_interaction", 409, json={"coordinates": [1, 1, 1],
                                                                     "include_interaction": True})
    assert "NNIA" in post("/set_image", 400, content=b"not an array")
    assert "4D" in post("/set_image", 400, content=pack_array(image))
    huge = bytearray(pack_array(image[None]))
    struct.pack_into("<4q", huge, 8 + len("uint8"), 1, 1 << 14, 1 << 14, 1 << 14)
    assert "at most" in post("/set_image", 413, content=bytes(huge))  # refused from its header: too large
    damaged = bytearray(pack_array(image[None]))
    damaged[-100:] = b"\x07" * 100
    assert post("/set_image", 400, content=bytes(damaged))
    assert "413" or post("/set_image", 413, content=b"x" * 10, headers={"content-length": str(1 << 40)})
    s.set_image(image[None], {"spacing": spacing})
    assert "target" in post("/add_bbox_interaction", 409, json={"bbox_coords": [[1, 2], [1, 9], [1, 9]],
                                                                  "include_interaction": True})
    assert "shape" in post("/set_target_buffer", 400, json={"shape": [1, 2, 3], "dtype": "uint8"})
    assert "dtype" in post("/set_target_buffer", 400, json={"shape": list(image.shape), "dtype": "float32"})
    assert "dtype" in post("/set_target_buffer", 400, json={"shape": list(image.shape), "dtype": {"x": 1}})
    buf = np.zeros(image.shape, np.uint8)
    s.set_target_buffer(buf)
    for body, said in [({"bbox_coords": [[1, 2], [1000, 1009], [1, 9]], "include_interaction": True}, "outside"),
                       ({"bbox_coords": [[3, 3], [1, 9], [1, 9]], "include_interaction": True}, "extent"),
                       ({"bbox_coords": [[1, 2], [1, 9]], "include_interaction": True}, "bbox_coords"),
                       ({"bbox_coords": [[1, "a"], [1, 9], [1, 9]], "include_interaction": True}, "numbers"),
                       ({"bbox_coords": [[1, 2], [1, 1e300], [1, 9]], "include_interaction": True}, "numbers"),
                       ({"bbox_coords": [[1, 2], [1, 9], [1, 9]], "include_interaction": "yes"}, "true or false")]:
        assert said in post("/add_bbox_interaction", 400, json=body)
    assert "outside" in post("/add_point_interaction", 400, json={"coordinates": [99, 1, 1],
                                                                   "include_interaction": True})
    assert "JSON" in post("/add_point_interaction", 400, content=b"{not json", headers={"content-type":
                                                                                         "application/json"})
    assert "JSON" in post("/add_point_interaction", 400, content=b"[" * 100000)
    meta = {"X-Meta": '{"include_interaction": true, "interaction_bbox": [[0, 1], [0, 5], [0, 5]]}'}
    assert "interaction_bbox" in post("/add_lasso_interaction", 400, content=pack_array(np.ones((2, 5, 5), np.uint8)),
                                      headers=meta)
    assert "scribble" in post("/add_scribble_interaction", 400, content=pack_array(np.ones((1, 5, 5), np.uint8)),
                              headers=meta)
    assert "shape" in post("/add_initial_seg_interaction", 400, content=pack_array(np.ones((2, 2, 2), np.uint8)))
    assert "X-Meta" in post("/add_initial_seg_interaction", 400, content=pack_array(np.ones((2, 2, 2), np.uint8)),
                            headers={"X-Meta": "{"})
    assert "lease" in post("/undo", 410, headers={"X-Lease-Token": "forged"})
    # after all that, the session works
    assert s.add_bbox_interaction(largest_slice_box(gt), include_interaction=True) is not None
    assert dice(buf > 0, gt) > 0.8
    s.close()


def test_two_clients_at_once_each_get_their_own_object(served, dev_data):
    """Two real clients, each its own volume, set_image and a box at the same moment (threads released together):
    the model runs one at a time (ModelTurns), each client's buffer gets its own object and nothing of the
    other's."""
    import threading

    from evaluation.served import box_dice

    names = [CASE, "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz"]
    sessions = [served.session(), served.session()]
    start = threading.Barrier(2)
    found, failed = {}, []

    def work(i):
        try:
            start.wait()
            found[i] = box_dice(sessions[i], dev_data, names[i])
        except Exception as e:  # said below: a thread's exception would be lost
            failed.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed, failed
    assert found[0] > 0.8 and found[1] > 0.8, found  # a swapped or mixed object would score near 0
    for s in sessions:
        s.close()
