"""litemedsam.serve.interactive's embedding cache: bounded in bytes, least recently used dropped, one encoding per
image however many threads ask at once."""
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from litemedsam.serve.encoding import EmbeddingCache


def emb(nbytes: int):
    return SimpleNamespace(features=np.zeros(nbytes, np.uint8))


def test_cache_is_bounded_and_drops_the_least_recently_used():
    cache = EmbeddingCache(max_bytes=300)
    for key in "abc":
        cache.get_or_encode(key, lambda: emb(100))
    cache.get_or_encode("a", lambda: emb(100))  # a is now the most recent
    cache.get_or_encode("d", lambda: emb(100))
    assert list(cache.items) == ["c", "a", "d"] and cache.bytes == 300
    cache.get_or_encode("huge", lambda: emb(1000))  # larger than the bound: returned, not kept
    assert "huge" not in cache.items and cache.bytes == 300


class Watched(dict):
    """EmbeddingCache.pending that counts the callers who found an encoding under way (and will wait for it)."""

    def __init__(self):
        super().__init__()
        self.waiting, self.changed = 0, threading.Condition()

    def get(self, key, default=None):
        found = super().get(key, default)
        if found is not None:
            with self.changed:
                self.waiting += 1
                self.changed.notify_all()
        return found


def test_concurrent_requests_encode_once():
    cache, calls = EmbeddingCache(), []
    cache.pending = Watched()

    def encode():  # the encoding lasts until the three other callers have come and found it under way
        calls.append(1)
        with cache.pending.changed:
            assert cache.pending.changed.wait_for(lambda: cache.pending.waiting >= 3, timeout=60)
        return emb(10)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_encode("k", encode))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_a_failed_encoding_is_retried_by_the_next_caller():
    cache = EmbeddingCache()

    def fail():
        raise RuntimeError("no")
    with pytest.raises(RuntimeError, match="no"):  # the failure reaches its caller
        cache.get_or_encode("k", fail)
    assert cache.get_or_encode("k", lambda: emb(5)).features.size == 5 and not cache.pending


def test_redrawing_an_object_on_some_slices_keeps_it_on_the_others(tmp_path):
    """Issue 26, bug 1: an object propagated over slices 1-5, redrawn on slice 4 alone, stays on 1-3 and 5; a
    redraw over a range replaces it there only; undo brings the earlier object back."""
    from litemedsam.io.cases import Case
    from litemedsam.serve.interactive import Document

    case = Case(tmp_path / "v.nii.gz", "3D", np.zeros((8, 16, 16), np.uint8), np.zeros((0, 6)))
    doc = Document(case, tmp_path / "out.nii.gz", None, None, EmbeddingCache(1 << 20))
    first = np.zeros((8, 16, 16), bool)
    first[1:6, 4:10, 4:10] = True
    assert doc.paint(first, None, (1, 5)) == 1
    redraw = np.zeros((8, 16, 16), bool)
    redraw[4, 2:6, 2:6] = True
    assert doc.paint(redraw, 1, (4, 4)) == 1
    assert (doc.labels[[1, 2, 3, 5]] == 1).sum() == 4 * 36 and (doc.labels[4] == 1).sum() == 16
    again = np.zeros((8, 16, 16), bool)
    again[2:4, 0:3, 0:3] = True
    doc.paint(again, 1, (2, 3))
    assert [(doc.labels[z] == 1).sum() for z in range(8)] == [0, 36, 9, 9, 16, 36, 0, 0]
    assert doc.undo() and doc.undo() and (doc.labels == 1).sum() == first.sum()


def test_work_file_replays_edits_and_survives_a_cut_and_a_forgery(tmp_path):
    """The work file of litemedsam serve: edits appended and replayed in order; a record cut short (the server
    killed while writing) or garbled, and a record with indices outside the image, are said and left out while
    every valid record is kept (issue 34, T27/T29: the whole file was dropped)."""
    import numpy as np
    import pytest

    from litemedsam.serve.interactive import append_edit, edit_record, replay_edits

    work = tmp_path / "segs" / ".litemedsam-work" / "a.npz.edits"
    append_edit(work, np.array([0, 1, 2]), [5, 5, 5])
    append_edit(work, np.array([1]), [0])  # an undo sets a voxel back
    assert (work.parent.stat().st_mode & 0o777) == 0o700 and (work.stat().st_mode & 0o777) == 0o600
    labels = np.zeros((2, 3), np.uint16)
    assert replay_edits(work.read_bytes(), labels) == (2, "") and labels.ravel().tolist() == [5, 0, 5, 0, 0, 0]
    labels[...] = 0
    count, damage = replay_edits(work.read_bytes()[:-3], labels)  # the last record cut short
    assert count == 1 and "no edit" in damage and labels.ravel().tolist() == [5, 5, 5, 0, 0, 0]
    labels[...] = 0
    garbled = edit_record([0], [1]) + b"\x07" * 20 + edit_record([99], [1]) + edit_record([4], [2])
    count, damage = replay_edits(garbled, labels)  # 20 garbage bytes, then a record off the image: both skipped
    assert count == 2 and "20 bytes" in damage and "outside the image" in damage
    assert labels.ravel().tolist() == [1, 0, 0, 0, 2, 0]
    (tmp_path / "link.edits").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        append_edit(tmp_path / "link.edits", np.array([0]), [1])  # never written through a link
    assert not (tmp_path / "elsewhere").exists()
