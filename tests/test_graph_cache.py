"""The optimised-graph cache: made on first use, used after, never trusted when stale, foreign or damaged,
never in a folder others can write; and sessions from it compute exactly what the original graphs do."""
import json
import os

import numpy as np
import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    from litemedsam.core import settings
    from litemedsam.models import graph_cache

    folder = tmp_path / "cache"
    monkeypatch.setenv("LITEMEDSAM_CACHE_DIR", str(folder))
    settings.cache_dir.cache_clear()
    yield folder
    settings.cache_dir.cache_clear()
    graph_cache.machine_key.cache_clear()


def encoder(models_ready):
    from litemedsam.models.registry import model_files

    return model_files(models_ready)[0]


def test_made_once_then_used_with_identical_results(models_ready, cache):
    from litemedsam.models import graph_cache
    from litemedsam.models.session import make_session

    path, sha = encoder(models_ready)
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    plain = make_session(path, 2).run(None, {"image": x})[0]
    assert graph_cache.lookup(sha) is None
    first = make_session(path, 2, sha).run(None, {"image": x})[0]
    entry = graph_cache.lookup(sha)
    assert entry is not None and entry.parent == cache and oct(cache.stat().st_mode & 0o777) == "0o700"
    second = make_session(path, 2, sha).run(None, {"image": x})[0]
    assert np.array_equal(plain, first) and np.array_equal(plain, second)
    assert not [p for p in cache.iterdir() if p.suffix == ".tmp"]


def test_damaged_or_foreign_entries_are_rebuilt(models_ready, cache):
    from litemedsam.models import graph_cache
    from litemedsam.models.session import make_session

    path, sha = encoder(models_ready)
    make_session(path, 1, sha)
    entry = graph_cache.lookup(sha)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    assert graph_cache.lookup(sha) is None  # damaged: its bytes no longer hash to the sidecar's value
    make_session(path, 1, sha)
    assert graph_cache.lookup(sha) is not None
    sidecar = entry.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**record, "machine": "another-machine"}))
    assert graph_cache.lookup(sha) is None  # foreign


def test_a_folder_others_can_write_is_never_used(tmp_path, monkeypatch):
    from litemedsam.core import settings

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("LITEMEDSAM_CACHE_DIR", str(shared))
    settings.cache_dir.cache_clear()
    try:
        assert settings.cache_dir() is None
        monkeypatch.setenv("LITEMEDSAM_CACHE_DIR", "off")
        settings.cache_dir.cache_clear()
        assert settings.cache_dir() is None
    finally:
        settings.cache_dir.cache_clear()


def test_remembered_digests_follow_the_file(tmp_path, cache):
    from litemedsam.models.digests import _hash, sha256_of

    f = tmp_path / "model.onnx"
    f.write_bytes(b"one")
    assert sha256_of(f) == _hash(f)
    f.write_bytes(b"two")  # same inode, new contents: a new change time
    assert sha256_of(f) == _hash(f)
    replaced = tmp_path / "other"
    replaced.write_bytes(b"three")
    os.replace(replaced, f)
    assert sha256_of(f) == _hash(f)


def test_weights_live_in_their_own_checked_file(models_ready, cache):
    """An entry's weights sit in a .data file beside it (mapped by ONNX Runtime, not parsed): a damaged weights
    file, or a sidecar naming any other file, means the entry is rebuilt; a rebuild leaves one weights file."""
    from litemedsam.models import graph_cache
    from litemedsam.models.session import make_session

    path, sha = encoder(models_ready)
    make_session(path, 1, sha)
    entry = graph_cache.lookup(sha)
    record = json.loads(entry.with_suffix(".json").read_text())
    weights = cache / record["data"]
    assert weights.stat().st_size > 10 * entry.stat().st_size
    data = bytearray(weights.read_bytes())
    data[len(data) // 3] ^= 0x01
    weights.write_bytes(bytes(data))
    assert graph_cache.lookup(sha) is None
    make_session(path, 1, sha)
    assert graph_cache.lookup(sha) is not None
    assert len(list(cache.glob(f"{entry.stem}-*.data"))) == 1
    sidecar = entry.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    for other in ("../elsewhere.data", "fingerprints.json", entry.name):
        sidecar.write_text(json.dumps({**record, "data": other}))
        assert graph_cache.lookup(sha) is None, other
