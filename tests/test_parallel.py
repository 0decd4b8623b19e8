"""A volume's slices encoded by several encoder sessions at once (litemedsam.models.parallel): the split chosen
from this machine's timing or forced, and the same masks as one session, to the voxel."""
import json

import numpy as np
import pytest

from litemedsam.core.errors import UsageError
from litemedsam.models import parallel


def test_the_split_is_forced_timed_or_one_session(monkeypatch, cache):
    monkeypatch.delenv(parallel.ENV, raising=False)
    assert parallel._record_path().parent == cache
    assert parallel.candidates(8) == [1, 2, 4] and parallel.candidates(3) == [1, 2]
    assert parallel.choose(1) == parallel.Split(1, 1, "one thread: nothing to split")
    assert parallel.choose(8).sessions == 1 and "not timed" in parallel.choose(8).reason
    record = {"8": {"seconds_per_slice": {"1": 1.0, "2": 0.6, "4": 0.45, "8": 0.5}, "date": "2026-12-05"},
              "2": {"seconds_per_slice": {"1": 0.52, "2": 0.50}, "date": "2026-12-05"}}
    parallel._record_path().write_text(json.dumps(record))
    assert (parallel.choose(8).sessions, parallel.choose(8).threads) == (4, 2)
    assert "2.22x" in parallel.choose(8).reason
    assert parallel.choose(2).sessions == 1 and "as fast" in parallel.choose(2).reason  # 1.04x < MARGIN
    monkeypatch.setenv(parallel.ENV, "2")
    assert (parallel.choose(8).sessions, parallel.choose(8).threads) == (2, 4)
    assert (parallel.choose(1).sessions, parallel.choose(1).threads) == (2, 1)
    monkeypatch.setenv(parallel.ENV, "64")  # the most it takes: capped to the CPUs and what the memory holds
    monkeypatch.setattr(parallel, "room_for_sessions", lambda: 3)
    monkeypatch.setattr(parallel, "available_cpus", lambda: 8)
    assert parallel.choose(2).sessions == 3 and "capped to 3" in parallel.choose(2).reason
    monkeypatch.setattr(parallel, "available_cpus", lambda: 2)
    assert parallel.choose(2).sessions == 2
    for bad in ("0", "many", "1e9", "65"):
        monkeypatch.setenv(parallel.ENV, bad)
        with pytest.raises(UsageError, match="is not a number of encoder sessions"):
            parallel.choose(4)
    parallel._record_path().write_text("{not json")
    monkeypatch.delenv(parallel.ENV)
    assert parallel.choose(8).sessions == 1


def test_every_thread_count_gives_the_same_embedding(models_ready, dev_data):
    from litemedsam.core import transforms
    from litemedsam.io.formats.challenge import load_case
    from litemedsam.models.registry import model_files
    from litemedsam.models.session import make_session

    (path, sha256), _ = model_files(models_ready)
    case = load_case(dev_data / "imgs" / "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz")
    x = transforms.preprocess(case.image[6], 256)
    outs = [make_session(path, threads, sha256).run(None, {"image": x})[0] for threads in (1, 2, 3)]
    assert all(np.array_equal(outs[0], out) for out in outs[1:])


@pytest.mark.parametrize("how", [{}, {"stop": 1}, {"stride": 3}])
def test_two_sessions_at_once_give_one_sessions_masks(models_ready, dev_data, monkeypatch, how):
    """Forced to two encoder sessions (this machine times one as fast), a CT lesion volume's three objects'
    masks equal one session's, also when a pass stops early (slices no pass needs are not encoded) and with a
    stride; each slice is encoded once."""
    from litemedsam.io.formats.challenge import load_case
    from litemedsam.methods import pipeline
    from litemedsam.methods.pipeline import segment_3d
    from litemedsam.methods.propagation import Propagation
    from litemedsam.models.segmenter import Segmenter

    monkeypatch.setattr(pipeline, "AHEAD_MIN_SLICES", 0)  # this small volume's slices encoded ahead too
    case = load_case(dev_data / "imgs" / "3DBox_CT_TotalSegmentator_example_ct_sm_PSEUDOGT.npz")
    boxes = case.boxes[:3]
    masks = {}
    for sessions in ("1", "2"):
        monkeypatch.setenv(parallel.ENV, sessions)
        seg = Segmenter("litemedsam", threads=2)
        encoded = []
        seg.encode = (lambda encode: lambda image, session=None: encoded.append(1) or encode(image, session))(
            seg.encode
        )
        masks[sessions] = segment_3d(seg, case.image, boxes, how=Propagation(**how))
        assert len(seg.slice_encoders()) == int(sessions)
        needed = {z for x0, y0, z0, x1, y1, z1 in boxes.astype(int).tolist() for z in range(z0, z1 + 1)}
        assert len(encoded) <= len(needed)  # no slice twice
    assert masks["1"].any() and np.array_equal(masks["1"], masks["2"])


def test_the_run_record_says_how_slices_are_encoded(models_ready, dev_data, tmp_path, monkeypatch):
    import subprocess
    import sys

    from conftest import REPO

    (tmp_path / "in").mkdir()
    name = "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz"
    (tmp_path / "in" / name).symlink_to(dev_data / "imgs" / name)
    outs = {}
    for sessions in ("1", "2"):
        done = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", tmp_path / "in", "-o",
                               tmp_path / sessions], capture_output=True, text=True, cwd=REPO,
                              env={**__import__("os").environ, parallel.ENV: sessions})
        assert done.returncode == 0, done.stderr
        record = json.loads((tmp_path / sessions / "run.json").read_text())
        assert (
            record["slice_encoding"].startswith(f"{sessions} session(s)") and parallel.ENV in record["slice_encoding"]
        )
        outs[sessions] = np.load(tmp_path / sessions / name)["segs"]
    assert np.array_equal(outs["1"], outs["2"])
    bad = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", tmp_path / "in", "-o", tmp_path / "bad"],
                         capture_output=True, text=True, cwd=REPO, env={**__import__("os").environ, parallel.ENV: "x"})
    assert bad.returncode == 2 and "LITEMEDSAM_SLICE_SESSIONS='x' is not a number of encoder sessions" in bad.stderr


def test_the_servers_background_encoder_uses_every_slice_session(models_ready, dev_data, monkeypatch):
    """The interactive core's background encoder (both servers' Scene.encode_ahead), forced to two sessions,
    encodes two slices per model turn and caches every slice once, each embedding equal to one session's."""
    import threading

    from litemedsam.io.formats.challenge import load_case
    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.methods.router import Router
    from litemedsam.models.segmenter import Segmenter, Segmenters
    from litemedsam.serve.encoding import CachingSegmenter, EmbeddingCache
    from litemedsam.serve.scene import Scene

    monkeypatch.setenv(parallel.ENV, "2")
    case = load_case(dev_data / "imgs" / "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz")
    scene = Scene(case, BoxPrompting(Router.load(None)), Segmenters(), EmbeddingCache(256 << 20))
    model = scene.model_for()
    done: list[int] = []
    scene.encode_ahead(lambda: 6, threading.Event(), done.append)
    assert sorted(done) == list(range(scene.depth)) and len(scene.cache.items) == scene.depth
    assert len(scene.segmenters.get(model).slice_encoders()) == 2
    monkeypatch.setenv(parallel.ENV, "1")
    one = CachingSegmenter(Segmenter(model), EmbeddingCache(), model)
    for z in (0, 6, scene.depth - 1):
        image = scene.image_slice(z)
        cached = scene.cache.items[one.key(image)]
        assert np.array_equal(cached.features, one.encode(image).features)
