"""Embeddings kept on disk (litemedsam.models.embedding_store): read back as written, a damaged or foreign entry
ignored and made again, the least recently used removed beyond the budget; with the real model, a new process's
cache reads them instead of encoding, and the masks are the same; the protocol server restarted on the same
volume encodes nothing again."""
import os

import numpy as np
import pytest

from litemedsam.models.embedding_store import EmbeddingStore


def features(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 4, size, size)).astype(np.float32)


def test_an_entry_reads_back_as_written_and_a_bad_one_is_made_again(tmp_path):
    store = EmbeddingStore(tmp_path, 1 << 20)
    key = ("litemedsam", "sha", (8, 8), b"digest")
    assert store.get(key) is None
    store.put(key, features(1))
    assert np.array_equal(store.get(key), features(1)) and store.get(("litemedsam", "sha", (8, 8), b"other")) is None
    path = store.path(key)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(data))
    assert store.get(key) is None and store.rejected == 1
    for foreign in (b"", b"\x93NUMPY" + b"\x00" * 100, path.read_bytes()[:50]):  # empty, a plain .npy, cut short
        path.write_bytes(foreign)
        assert store.get(key) is None
    store.put(key, features(2))  # made again, written over it
    assert np.array_equal(store.get(key), features(2))


def test_a_pickled_entry_is_never_loaded(tmp_path):
    import io

    from litemedsam.models import embedding_store

    store = EmbeddingStore(tmp_path, 1 << 20)
    key = ("k",)
    body = io.BytesIO()
    np.save(body, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    raw = body.getvalue()
    store.path(key).write_bytes(embedding_store.MAGIC + embedding_store.checksum(raw) + raw)
    assert store.get(key) is None and store.rejected == 1


def test_an_entry_of_another_type_or_layout_is_not_read(tmp_path):
    import io

    from litemedsam.models import embedding_store

    store = EmbeddingStore(tmp_path, 1 << 20)
    for other in (features(1).astype(np.float64), np.asfortranarray(features(1)), features(1)[0]):
        body = io.BytesIO()
        np.save(body, other)
        raw = body.getvalue()
        store.path(("k",)).write_bytes(embedding_store.MAGIC + embedding_store.checksum(raw) + raw)
        assert store.get(("k",)) is None
    assert store.rejected == 3


def test_the_least_recently_used_entries_go_beyond_the_budget(tmp_path):
    one = len(features(0).tobytes()) + 200
    store = EmbeddingStore(tmp_path, 3 * one)
    keys = [("k", i) for i in range(4)]
    for i, key in enumerate(keys[:3]):
        store.put(key, features(i))
        os.utime(store.path(key), (1000 + i, 1000 + i))  # written in this order, seconds apart
    store.get(keys[0])  # used now: the most recent
    store.put(keys[3], features(3))
    kept = [store.get(key) is not None for key in keys]
    assert kept == [True, False, True, True], kept


def test_no_store_without_a_budget_or_a_private_folder(tmp_path, monkeypatch, cache):
    assert EmbeddingStore.default(0) is None
    assert EmbeddingStore.default(1 << 20).folder == cache / "embeddings"
    from litemedsam.core import settings

    monkeypatch.setenv("LITEMEDSAM_CACHE_DIR", "off")
    settings.cache_dir.cache_clear()
    assert EmbeddingStore.default(1 << 20) is None


def test_a_new_process_reads_the_embeddings_and_the_masks_are_the_same(models_ready, dev_data, cache):
    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.methods.router import Router
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.serve.encoding import EmbeddingCache
    from litemedsam.serve.scene import Scene
    from litemedsam.io.formats.challenge import load_case

    case = load_case(dev_data / "imgs" / "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz")
    x0, y0, z0, x1, y1, z1 = case.boxes[0].tolist()
    prompting, segmenters = BoxPrompting(Router.load()), Segmenters()

    def run(store):
        scene = Scene(case, prompting, segmenters, EmbeddingCache(64 << 20, store))
        return scene.propagate((x0, y0, x1, y1), (z0 + z1) // 2)[0]

    first = EmbeddingStore.default(1 << 30)
    none = run(None)
    made = run(first)
    assert first.writes > 0 and first.reads == 0 and np.array_equal(made, none)
    again = EmbeddingStore.default(1 << 30)  # as a restarted server makes it
    read = run(again)
    assert again.reads == first.writes and again.writes == 0 and np.array_equal(read, none)


@pytest.mark.parametrize("budget", [0, 4096])
def test_the_protocol_server_restarted_encodes_nothing_again(models_ready, dev_data, cache, tmp_path, budget):
    """The same volume sent again to a restarted server (3D Slicer after a restart): its slices are read from the
    disk store (no new entry), and the box gives the same object."""
    from evaluation.served import Served

    data = np.load(dev_data / "imgs" / "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz")
    image = data["imgs"]
    x0, y0, z0, x1, y1, z1 = data["boxes"][0].tolist()
    box = [[(z0 + z1) // 2, (z0 + z1) // 2 + 1], [y0, y1 + 1], [x0, x1 + 1]]
    from evaluation.served import REPO, wait_encoded

    env = {**os.environ, "PYTHONPATH": str(REPO), "LITEMEDSAM_CACHE_DIR": str(cache)}
    folder = cache / "embeddings"
    results, entries = [], []
    for _ in range(2):
        server = Served(tmp_path, "--disk-cache-mb", budget, env=env)
        try:
            session = server.session()
            session.set_image(image[None], {"spacing": [float(v) for v in data["spacing"][::-1]]})
            buf = np.zeros(image.shape, np.uint8)
            session.set_target_buffer(buf)
            session.add_bbox_interaction(box, include_interaction=True)
            results.append(buf.copy())
            wait_encoded(session)  # every slice encoded (or read) by the background encoder: the server says so
            session.close()
        finally:
            server.close()
        entries.append(sorted(folder.glob("*.emb")) if folder.is_dir() else [])
    assert np.array_equal(results[0], results[1]) and results[0].any()
    if budget:
        assert entries[0] and entries[1] == entries[0]
    else:
        assert entries == [[], []]


def test_within_memory_the_embeddings_bound_counts_when_an_image_comes():
    """serve --memory: an image is admitted only if its memory and what the embeddings' cache may still grow to
    fit (the cache is capped at a quarter of --memory at start), so the server stays within it."""
    from litemedsam.core.limits import available_memory, resident_bytes
    from litemedsam.serve.http import Refused
    from litemedsam.serve.nninteractive import Protocol, ProtocolOptions
    from litemedsam.serve.encoding import EmbeddingCache

    if (available_memory() or 0) < 1 << 30:
        pytest.skip("less than 1 GB of memory available here")
    shape, dtype = (1, 100, 1000, 1000), np.dtype(np.uint8)  # 100 MB, about 500 MB with its work
    budget = resident_bytes() + (800 << 20)
    small = Protocol(ProtocolOptions("k" * 16, memory=budget), None, None, EmbeddingCache(64 << 20))
    small.check_image(shape, dtype)
    large = Protocol(ProtocolOptions("k" * 16, memory=budget), None, None, EmbeddingCache(1 << 30))
    with pytest.raises(Refused, match="--memory"):
        large.check_image(shape, dtype)


def test_slices_beyond_the_memory_cache_go_to_disk_without_pushing_out_the_nearer(models_ready, dev_data, cache):
    """Issue 46: with a disk store, the background encoder on a volume larger than the memory cache pushed out the
    slices nearest the user's (encoded first) for far ones; now those stay in memory and the far ones are
    written to disk only, each slice encoded once."""
    import threading

    from litemedsam.io.formats.challenge import load_case
    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.methods.router import Router
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.serve.encoding import CachingSegmenter, EmbeddingCache
    from litemedsam.serve.scene import Scene

    case = load_case(dev_data / "imgs" / "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz")
    store = EmbeddingStore.default(1 << 30)
    scene = Scene(case, BoxPrompting(Router.load()), Segmenters(), EmbeddingCache(16 << 20, store))  # 4 slices
    focus = 6
    scene.encode_ahead(lambda: focus, threading.Event())
    model = scene.model_for()
    keys = CachingSegmenter(scene.segmenters.get(model), scene.cache, model)
    held = {z for z in range(case.image.shape[0]) if keys.cached(case.image[z])}
    assert held == {4, 5, 6, 7}, held  # the slices nearest slice 6 (encoded first: 6, 5, 7, 4)
    assert store.writes == case.image.shape[0] and store.reads == 0  # each slice encoded and written once
