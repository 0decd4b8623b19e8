"""A scene's slices encoded ahead, in a thread of its own: the one background encoder behind both servers (the
app's open case, the protocol's lease). It encodes outwards from the slice ``focus`` names (the one shown, the
latest interaction's), gives way to every prompt (litemedsam.serve.encoding.ModelTurns) and stops when asked."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger("litemedsam.serve")


class BackgroundEncoding:
    """Scene ``scene``'s slices (with ``plane`` "y" or "x": its cuts across them, a view a box was drawn in)
    encoded ahead (Scene.encode_ahead) from ``focus`` (settable) outwards; ``ready``: those whose embeddings are
    ready. ``stop()`` ends it at its next slice; with ``forget``, the scene's
    embeddings are let go from memory once it has ended (an image no one works on). A failure costs speed only
    (an interaction encodes its own slice): it is logged and kept in ``problem``, never raised."""

    def __init__(self, scene, focus: int = 0, forget: bool = False, plane: str = "z"):
        self.scene, self.focus, self.forget, self.plane = scene, focus, forget, plane
        self.ready: set = set()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.problem = ""
        self.lock = threading.Lock()

    def start(self) -> None:
        """Start it (once; again is nothing)."""
        with self.lock:
            if self.thread is not None or self.stopped.is_set():
                return
            self.thread = threading.Thread(target=self._run, daemon=True, name="litemedsam-encode-ahead")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.scene.encode_ahead(lambda: self.focus, self.stopped, self.ready.add, self.plane)
        except Exception as e:
            self.problem = f"{type(e).__name__}: {e}"
            log.exception("background encoding stopped")
        if self.forget and self.stopped.is_set():  # let go while a slice was being encoded: that one too
            self.scene.forget_embeddings(self.plane)

    def stop(self) -> None:
        self.stopped.set()
        if self.forget:
            self.scene.forget_embeddings(self.plane)

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def warm_models(prompting, segmenters, dims: tuple) -> None:
    """Load the models that prompts on ``dims`` cases run and warm their decoders (Segmenter.warm_up), while the
    server starts (~0.3 s): the first prompt after a start, its slices' embeddings on disk, is then nearly as quick
    as the next ones (it was ~2x). A failure is logged only: the first prompt says it."""
    try:
        for model in dict.fromkeys(prompting.model_of(dim) for dim in dims):
            if model is not None:
                segmenters.get(model).warm_up()
    except Exception as e:  # a model that cannot load: said again by the first prompt that needs it
        log.warning("warming the models up failed: %s", e)
