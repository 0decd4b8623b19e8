"""litemedsam.interactive's embedding cache: bounded in bytes, least recently used dropped, one encoding per
image however many threads ask at once."""
import threading
import time
from types import SimpleNamespace

import numpy as np

from litemedsam.interactive import EmbeddingCache


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


def test_concurrent_requests_encode_once():
    cache, calls = EmbeddingCache(), []

    def encode():
        calls.append(1)
        time.sleep(0.2)
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
    try:
        cache.get_or_encode("k", fail)
    except RuntimeError:
        pass
    assert cache.get_or_encode("k", lambda: emb(5)).features.size == 5 and not cache.pending
