"""The model's side of the interactive core, shared by every scene of a server: image embeddings kept by slice
content (EmbeddingCache: bounded in bytes, one encoding per slice however many ask at once, and a disk store behind
it), a segmenter that goes through that cache (CachingSegmenter) or reports each slice it reads (Reporting), and
the model's turns (ModelTurns: one run at a time, interactions first, a background encoder stopped at once when a
prompt comes)."""
from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict, deque

import numpy as np

from litemedsam.core import progress
from litemedsam.models.segmenter import Embedding


class Cancelled(Exception):
    """A propagation was cancelled."""


class EmbeddingCache:
    """Encoded images by (model, image content), least recently used dropped beyond ``max_bytes``; an image
    being encoded by one thread is waited for by the others, not encoded twice. With a ``store``
    (litemedsam.models.embedding_store), what is encoded is also kept on disk and read back from there after
    a restart or once dropped here."""

    def __init__(self, max_bytes: int = 1 << 30, store=None):
        self.max_bytes, self.bytes, self.store = max_bytes, 0, store
        self.items: OrderedDict = OrderedDict()
        self.pending: dict = {}  # key -> Event set when its encoding ends
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_encode(self, key, encode):
        while True:
            with self.lock:
                emb = self.items.get(key)
                if emb is not None:
                    self.items.move_to_end(key)
                    self.hits += 1
                    return emb
                running = self.pending.get(key)
                if running is None:
                    self.pending[key] = threading.Event()
                    self.misses += 1
                    break
            running.wait()  # then look again: done, or failed (or too large to keep) and encoded here
        try:
            emb = encode()
            self._put(key, emb)
            return emb
        finally:
            with self.lock:
                self.pending.pop(key).set()

    def forget(self, keys) -> None:
        """Drop these embeddings (an image no one works on any more); on disk they stay."""
        with self.lock:
            for key in keys:
                emb = self.items.pop(key, None)
                if emb is not None:
                    self.bytes -= emb.features.nbytes

    def has(self, key) -> bool:
        with self.lock:
            return key in self.items

    def room(self, n: int = 1) -> bool:
        """Whether ``n`` more embeddings of the size of the last one fit without pushing another out."""
        with self.lock:
            last = next(reversed(self.items.values()), None)
            return last is None or self.bytes + n * last.features.nbytes <= self.max_bytes

    def _put(self, key, emb) -> None:
        size = emb.features.nbytes
        with self.lock:
            if key in self.items or size > self.max_bytes:
                return
            self.items[key] = emb
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self.items.popitem(last=False)
                self.bytes -= old.features.nbytes


class CachingSegmenter:
    """A box segmenter whose ``encode`` goes through an EmbeddingCache; everything else is the segmenter's."""

    def __init__(self, segmenter, cache: EmbeddingCache, name: str):
        self.segmenter, self.cache, self.name = segmenter, cache, name

    def key(self, image: np.ndarray) -> tuple:
        """(model, its encoder's checksum (None: not pinned), the image's shape, its content's digest)."""
        sha256 = (self.segmenter.encoder_file or (None, None))[1]
        return (self.name, sha256, image.shape,
                hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest())

    def encode(self, image: np.ndarray, session=None, options=None):
        """The image's embedding from the cache, or from the disk store, or encoded (by ``session``: one of the
        segmenter's slice encoders, litemedsam.methods.pipeline.Ahead; ``options``: the run's) and kept in both."""
        key = self.key(image)
        return self.cache.get_or_encode(key, lambda: self._stored_or_encoded(key, image, session, options))

    def _stored_or_encoded(self, key: tuple, image: np.ndarray, session, options):
        store = self.cache.store if key[1] else None  # an encoder without a checksum is never kept on disk
        features = store.get(key) if store is not None else None
        if features is not None:
            return Embedding(features, self.segmenter.frame(*image.shape[:2]))
        emb = self.segmenter.encode(image, session, options)
        if store is not None:
            store.put(key, emb.features)
        return emb

    def cached(self, image: np.ndarray) -> bool:
        return self.cache.has(self.key(image))

    def put_away(self, image: np.ndarray, session=None, options=None) -> None:
        """The image encoded into the disk store only, unless it is there already (the background encoder, once
        the memory cache is full: the slices near the user's stay in memory, the far ones come back from disk)."""
        key, store = self.key(image), self.cache.store
        if store is None or not key[1]:
            self.encode(image, session, options)
        elif not self.cache.has(key) and not store.path(key).is_file():
            store.put(key, self.segmenter.encode(image, session, options).features)

    def __getattr__(self, name):
        return getattr(self.segmenter, name)


class Reporting:
    """A segmenter that reports each slice it encodes (litemedsam.core.progress: of an unknown total), so that a
    click that reads many slices shows progress and can be stopped between them."""

    def __init__(self, segmenter):
        self.segmenter, self.encoded = segmenter, 0

    def encode(self, image: np.ndarray, session=None, options=None):
        progress.report(self.encoded, 0)
        self.encoded += 1
        return self.segmenter.encode(image, session, options)

    def __getattr__(self, name):
        return getattr(self.segmenter, name)


class ModelTurns:
    """One model run at a time, interactions first and in the order they came (so that two clients, or tabs, take
    turns: each waits behind at most one run of every other): ``with turns:`` is an interaction's turn; ``with
    turns.background() as turn:`` a background encoder's, taken only when no interaction waits (a plain lock would
    let an encoder that releases and takes it again in a loop starve a waiting interaction). An interaction that
    comes while a background turn runs stops its runs (those given ``turn.options()``: ONNX Runtime's terminate
    flag), so it waits milliseconds, not the rest of an encoding; ``turn.stopped`` says so (the slices are
    encoded again later)."""

    def __init__(self):
        self.changed = threading.Condition()
        self.queue: deque = deque()  # the interactions waiting, first come first
        self.busy = False
        self.running: BackgroundTurn | None = None  # the background turn under way, if any

    @property
    def waiting(self) -> int:
        return len(self.queue)

    def __enter__(self):
        me = object()
        with self.changed:
            self.queue.append(me)
            if self.running is not None:
                self.running.stop()
            self.changed.wait_for(lambda: not self.busy and self.queue[0] is me)
            self.queue.popleft()
            self.busy = True

    def __exit__(self, *exc) -> None:
        with self.changed:
            self.busy = False
            self.running = None
            self.changed.notify_all()

    @contextlib.contextmanager
    def background(self):
        with self.changed:
            self.changed.wait_for(lambda: not self.busy and not self.queue)
            self.busy = True
            self.running = turn = BackgroundTurn()
        try:
            yield turn
        finally:
            self.__exit__()


class BackgroundTurn:
    """A background encoder's turn: the options of its model runs, stopped when an interaction comes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runs: list = []
        self.stopped = False

    def options(self):
        """A new run's options (litemedsam.models.session.interruptible), stopped at once if the turn is."""
        from litemedsam.models.session import interruptible

        options = interruptible()
        with self.lock:
            options.terminate = self.stopped
            self.runs.append(options)
        return options

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for options in self.runs:
                options.terminate = True
