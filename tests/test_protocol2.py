"""The protocol server as 3D Slicer users meet it (issue 50), with the real nninteractive-client: a new image lets
the old one's embeddings go, so its encoding completes however small the memory cache."""
import time

import numpy as np
import pytest

LESIONS = ["3DBox_CT_CT_Lesion_000001_02_01_008-023.npz", "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz"]


def encoded_within(session, seconds: float = 600) -> dict:
    """The lease's status once every slice is encoded (the server's own count), or a failure past ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        status = session.lease_status()
        if status["encoded_slices"] >= status["slices"] or time.monotonic() > deadline:
            return status
        time.sleep(0.1)  # polling the server's own count


@pytest.fixture
def small_cache_server(models_ready, tmp_path):
    from evaluation.served import Served

    # 64 MB: 16 of LiteMedSAM's slices, less than two lesion volumes; no disk store to read them back from
    server = Served(tmp_path, "--cache-mb", "64", "--disk-cache-mb", "0")
    yield server
    _, err = server.close()
    assert "Traceback" not in err, err


def test_a_new_image_lets_the_old_ones_embeddings_go(small_cache_server, dev_data):
    """1: after one image was encoded whole, the next stalled (BraTS 109/155, then brain2 1/23): the cache kept
    the old image's slices and the encoder never pushes out what it encoded."""
    session = small_cache_server.session()
    for name in LESIONS + LESIONS[:1]:
        image = np.load(dev_data / "imgs" / name)["imgs"]
        session.set_image(image[None], {})
        status = encoded_within(session)
        assert status["encoded_slices"] == status["slices"] == image.shape[0], (name, status)
    session.close()


BRATS = "3DBox_MR_BraTS-deepmedic_brats_2013_pat0001_1.npz"  # 155 slices: a cold box encodes dozens of them


def test_stopping_the_server_cancels_the_interaction_under_way(models_ready, dev_data, tmp_path):
    """5: SIGTERM with a client's box under way waited for it (106 s; ~3 min for a killed client's). Now the box is
    cancelled at its next slice, said on stderr, and the client gets an error, not a mask."""
    import threading

    from evaluation.served import Served, largest_slice_box

    server = Served(tmp_path, "--disk-cache-mb", "0")
    image = np.load(dev_data / "imgs" / BRATS)["imgs"]
    box = largest_slice_box(np.load(dev_data / "gts" / BRATS)["gts"] == 1)
    session = server.session()
    session.set_image(image[None], {})
    buf = np.zeros(image.shape, np.uint8)
    session.set_target_buffer(buf)
    failed = []

    def draw():
        try:
            session.add_bbox_interaction(box, include_interaction=True)
        except Exception as e:  # the client's error for the cancelled request, or its connection closed
            failed.append(e)
    thread = threading.Thread(target=draw)
    thread.start()
    interacting_of(server, session)
    server.proc.terminate()
    _, err = server.proc.communicate(timeout=600)
    thread.join(600)
    assert server.proc.returncode in (0, 143) and "cancelled" in err and "Traceback" not in err, err
    assert failed and not buf.any()


def interacting_of(server, session, seconds: float = 300) -> None:
    """Wait until the server says the session's lease is computing an interaction (its own lease_status)."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        r = httpx.get(server.url + "/lease_status", headers={"Authorization": f"Bearer {server.key}",
                                                              "X-Lease-Token": lease_token(session)})
        if r.json().get("interacting"):
            return
        assert time.monotonic() < deadline, "the interaction never started"
        time.sleep(0.05)  # polling the server's own state


def lease_token(session) -> str:
    return session._lease_token  # the client's own (nninteractive-client 2.6.0)


def test_a_client_that_gave_up_has_its_work_stopped(models_ready, dev_data, tmp_path):
    """3: a cold box past the client's read timeout (60 s by default, Slicer's) went on being computed for nobody.
    Now the server sees the client go and stops the work at its next slice; the lease is free again."""
    from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession

    from evaluation.served import Served, largest_slice_box

    server = Served(tmp_path, "--disk-cache-mb", "0")
    image = np.load(dev_data / "imgs" / BRATS)["imgs"]
    box = largest_slice_box(np.load(dev_data / "gts" / BRATS)["gts"] == 1)
    impatient = nnInteractiveRemoteInferenceSession(server.url, api_key=server.key, read_timeout=3)
    impatient.set_image(image[None], {})
    buf = np.zeros(image.shape, np.uint8)
    impatient.set_target_buffer(buf)
    with pytest.raises(Exception):  # the client's read timeout: it gives up and closes its connection
        impatient.add_bbox_interaction(box, include_interaction=True)
    status = impatient.lease_status()
    deadline = time.monotonic() + 300
    while status.get("interacting"):  # until the server has stopped it
        assert time.monotonic() < deadline
        time.sleep(0.05)  # polling the server's own state
        status = impatient.lease_status()
    impatient.close()
    _, err = server.close()
    assert "the client went away" in err and "Traceback" not in err, err


def drained(session) -> None:
    """Every answer owed to ``session``: /predict until its lease's work has ended (each answers within the server's
    --answer-within with what changed meanwhile), then once more for the rest."""
    while session.lease_status()["interacting"]:
        session._predict()  # the client's own manual prediction (nninteractive-client 2.6.0)
    session._predict()


def test_a_box_past_the_clients_read_timeout_is_answered_in_time_and_finished(models_ready, dev_data, tmp_path):
    """3: a cold box can take longer than the client's read timeout (60 s by default, Slicer's): the client failed
    (a read timeout) and the object was lost. Now the answer comes within --answer-within, with what is done;
    the work goes on and the next answers carry the rest: the same object as when answered at once."""
    from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession

    from evaluation.served import Served, largest_slice_box

    image = np.load(dev_data / "imgs" / BRATS)["imgs"]
    box = largest_slice_box(np.load(dev_data / "gts" / BRATS)["gts"] == 1)
    objects = []
    for within in ("1", "3600"):
        server = Served(tmp_path, "--disk-cache-mb", "0", "--answer-within", within)
        try:
            # the reference waits as long as it takes (600 s) for one answer
            session = (nnInteractiveRemoteInferenceSession(server.url, api_key=server.key, read_timeout=10)
                       if within == "1" else server.session())
            session.set_image(image[None], {})
            buf = np.zeros(image.shape, np.uint8)
            session.set_target_buffer(buf)
            session.add_bbox_interaction(box, include_interaction=True)  # a cold box: ~30 s here
            if within == "1":
                assert session.lease_status()["interacting"]  # answered while it goes on
                drained(session)
            objects.append(buf)
            session.close()
        finally:
            _, err = server.close()
        assert "Traceback" not in err, err
    assert objects[1].sum() > 1000 and np.array_equal(objects[0], objects[1])


def test_capabilities_do_not_promise_a_refinement_the_server_does_not_make(models_ready, tmp_path):
    """4: /capabilities said supports_zero_shot_label_refinement true, while an initial segmentation sent with
    run_prediction true came back unchanged (napari's "auto refine" did nothing)."""
    import httpx

    from evaluation.served import Served

    server = Served(tmp_path, "--disk-cache-mb", "0")
    try:
        caps = httpx.get(server.url + "/capabilities", headers={"Authorization": f"Bearer {server.key}"}).json()
        assert caps["supports_initial_label"] is True and caps["supports_zero_shot_label_refinement"] is False
    finally:
        server.close()
