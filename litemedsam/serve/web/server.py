"""The browser app's server side (litemedsam.serve.web): its open cases (``Server``: one Document per case, the
least recently used closed past MAX_OPEN), the token gate, the JSON endpoint wrapper and the request checks the
endpoints (litemedsam.serve.web.cases, litemedsam.serve.web.edits) share.
"""
from __future__ import annotations

import contextvars
import hmac
import os
import secrets
import shutil
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from litemedsam.core.errors import LitemedsamError, shown
from litemedsam.run.folders import list_cases
from litemedsam.io.formats.registry import numbered, output_name
from litemedsam.io import formats
from litemedsam.serve.interactive import Document, open_case
from litemedsam.io.overlay import colour
from litemedsam.serve.http import refusal, Refused, integer, json_object, read_body
from litemedsam.serve.background import BackgroundEncoding
from litemedsam.serve.encoding import Cancelled, EmbeddingCache, ModelTurns
from litemedsam.serve.labelmap import EDITOR


MAX_JSON = 65536  # bytes of a JSON request
MAX_OPEN = 4  # documents kept open; the least recently used is closed (its unsaved edits stay in its work file;
# one whose edits could not all be written there stays open)


@dataclass
class EditJob:
    """A 3D propagation or click running in a thread (the page shows its progress and can cancel it)."""

    label: int | None
    doing: str = "propagating"  # or "clicking"
    was: int = 0  # the voxels of the object it redraws before (0: a new object)
    done: int = 0
    total: int = 0
    state: str = "running"  # running, done, cancelled, failed
    message: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def report(self, done: int, total: int) -> None:
        """Progress (slices done of ``total``; 0: unknown); raises Cancelled once a cancel is asked for."""
        self.done, self.total = done, total
        self.check()

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()


@dataclass
class OpenCase:
    doc: Document
    name: str
    job: EditJob | None = None
    upload: Path | None = None  # the private folder of an uploaded case, removed when the case is closed
    encoding: BackgroundEncoding = field(init=False)  # its slices encoded ahead, from the one last shown

    def __post_init__(self):
        self.encoding = BackgroundEncoding(self.doc)


class Server:
    """What the app serves: FOLDER's cases, the output folder, the open documents, one embedding cache."""

    def __init__(self, folder: Path | None, output_dir: Path, prompting, segmenters, cache_bytes: int,
                 max_upload: int, inputs=None, hosts=("127.0.0.1", "localhost"), token: str | None = None,
                 table: dict | None = None, store=None):
        self.folder, self.output_dir = folder, output_dir
        self.table = table or {}  # the project's label table (serve --labels): names and colours by label
        self.hosts = list(hosts)  # Host headers accepted
        self.token = token or secrets.token_urlsafe(32)  # every request must carry it (TokenGate)
        self.prompting, self.segmenters, self.inputs = prompting, segmenters, inputs
        self.turns = ModelTurns()  # one model run at a time for all cases, boxes and clicks before background encoding
        self.cache = EmbeddingCache(cache_bytes, store)  # store: embeddings on disk (serve --disk-cache-mb)
        self.max_upload = max_upload
        self.docs: dict = {}  # id -> OpenCase, least recently used first
        self.lock = threading.Lock()
        self.opening = threading.Lock()  # one open at a time: two tabs opening a case get one document
        self.uploads = Path(tempfile.mkdtemp(prefix="litemedsam-uploads-"))

    def close(self) -> None:
        """The server ends (Ctrl-C, SIGTERM): running propagations are cancelled (their labels stay as before) and
        the background encoders stopped, and both waited for, before the model sessions go with the process (a
        thread still in ONNX Runtime then aborted it); the uploads are removed."""
        with self.lock:
            entries = list(self.docs.values())
        threads = []
        for entry in entries:
            entry.encoding.stop()
            if entry.job is not None and entry.job.state == "running":
                entry.job.cancel.set()
                sys.stderr.write(f"litemedsam serve: stopping the propagation running on {shown(entry.name)} (its "
                                 f"labels stay as they were)\n")
            threads += [entry.job.thread if entry.job else None, entry.encoding.thread]
        for thread in filter(None, threads):
            thread.join(timeout=120)
        shutil.rmtree(self.uploads, ignore_errors=True)

    def cases(self) -> dict:
        if self.folder is None:
            return {}
        found, _ = list_cases(self.folder)
        return {p.name: p for p in found}

    def open(self, path: Path, name: str, target: Path | None = None, upload: Path | None = None) -> str:
        """The id of the open document of the case at ``path`` (saved to ``target``, default its output name):
        the one already open for that output, whoever opened it, else a new one (``open_case``)."""
        target = target or self.output_dir / output_name(path)
        with self.opening:
            with self.lock:
                found = next((k for k, o in self.docs.items() if o.doc.target == target), None)
            if found is not None:
                return found
            doc = open_case(path, self.output_dir, self.prompting, self.segmenters, self.cache, self.inputs, target,
                            self.turns, self.table)
            return self.add(doc, name, upload)

    def add(self, doc: Document, name: str, upload: Path | None = None) -> str:
        key = uuid.uuid4().hex
        with self.lock:
            self.docs[key] = OpenCase(doc, name, upload=upload)
            idle = [k for k, o in self.docs.items() if not busy(o) and not o.doc.behind and not o.doc.names_behind]
            for old in idle[:max(0, len(self.docs) - MAX_OPEN)]:  # oldest first; never one propagating
                closed = self.docs.pop(old)
                closed.encoding.stop()
                if closed.upload is not None:
                    shutil.rmtree(closed.upload, ignore_errors=True)
        return key

    def warm(self, entry: OpenCase, z: int) -> None:
        """Encode the case's slices in the background, slice ``z`` (the one shown) and those nearest it first
        (Scene.encode_ahead: boxes and clicks go first; errors show at the box)."""
        entry.encoding.focus = z
        entry.encoding.start()

    def upload_target(self, path: Path) -> Path:
        """Where an uploaded case is saved: ``OUTPUT/uploads/`` under its output name, numbered (``x-2.png``) past
        any file there or output of an open case, so that an upload never shares an output, never opens with
        another case's labels and never replaces them."""
        folder = self.output_dir / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        with self.lock:
            taken = {entry.doc.target for entry in self.docs.values()}
            n = 1
            while (target := folder / numbered(output_name(path), n)) in taken or os.path.lexists(target):
                n += 1
            return target

    def get(self, key: str) -> OpenCase:
        with self.lock:
            found = self.docs.get(key)
            if found is None:
                raise Refused(404, "this case is no longer open (reopen it)")
            self.docs[key] = self.docs.pop(key)  # most recently used last
            return found


def busy(entry: OpenCase) -> bool:
    return entry.job is not None and entry.job.state == "running"


def idle(entry: OpenCase) -> OpenCase:
    """``entry``, or Refused 409 while a propagation runs on it."""
    if entry.job is not None and busy(entry):
        raise Refused(409, f"{entry.job.doing} is running on this case: wait for it or cancel it")
    return entry


MAX_BRUSH_POINTS = 10000  # points of one brush stroke


def describe(key: str, entry: OpenCase) -> dict:
    doc = entry.doc
    shape = doc.labels.shape if doc.case.dim == "3D" else (1, *doc.labels.shape)
    try:
        model = doc.model_for()
    except LitemedsamError as e:
        model = f"none ({e})"
    return {"id": key, "name": entry.name, "dim": doc.case.dim, "depth": shape[0], "height": shape[1],
            "width": shape[2], "model": model, "output": doc.target.name, **edited(doc),
            "raw": doc.raw, "window": doc.window, "display": formats.display(doc.case),
            "spacing": formats.spacing(doc.case),
            "notice": doc.notice, "readonly": doc.readonly, "guard": describe_guard(doc.guard),
            "table": [{"label": label, "name": e["name"], "color": shade(doc, label)}
                      for label, e in sorted(doc.table.items())],
            "encoded": len(entry.encoding.ready)}


def describe_guard(guard) -> dict:
    return {"over": guard.over, "inside": guard.inside, "locked": sorted(guard.locked)}


def edited(doc: Document) -> dict:
    """What the page shows after an edit: the objects, and whether edits are not saved yet (they are kept in
    the work file; ``problem``: why they could not be)."""
    return {"objects": objects(doc), "unsaved": doc.unsaved, "problem": doc.autosave_problem, "change": doc.change}


def objects(doc: Document) -> list:
    """Each object's label, voxels, colour, the confidence of the box that made it (the decoder's predicted IoU;
    None for objects from a file or the brush) and, for a volume with a spacing, its volume in mL."""
    mm3 = formats.voxel_mm3(doc.case) if doc.case.dim == "3D" else None
    return [{"label": label, "voxels": voxels, "color": shade(doc, label), "name": doc.entry(label)["name"],
             "confidence": doc.confidence.get(label), "ml": round(voxels * mm3 / 1000, 3) if mm3 else None}
            for label, voxels in doc.objects()]


def shade(doc: Document, label: int) -> tuple:
    """An object's colour: its own (Document.entry), else the palette's."""
    given = doc.entry(label)["color"]
    return tuple(given) if given else colour(label)


def png(image: np.ndarray) -> Response:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return Response(data.tobytes(), media_type="image/png", headers={"Cache-Control": "no-store"})


def overlay(doc: Document, labels: np.ndarray, hidden=frozenset()) -> np.ndarray:
    """An RGBA image of a label slice: each object in its colour, background and ``hidden`` objects transparent."""
    colours = np.zeros((int(labels.max(initial=0)) + 1, 4), np.uint8)
    for label in range(1, len(colours)):
        if label not in hidden:
            colours[label] = (*shade(doc, label), 255)
    return colours[labels]


class TokenGate:
    """Only API requests carrying the server's token in the header ``X-Litemedsam-Token`` pass. The page (the
    package's own files, no data: served to anyone) takes the token from the address's fragment (``/#token=…``,
    which browsers never send to a server; ``?token=`` is read too), keeps it in the tab's sessionStorage (its
    origin's: this port's) and sends it as that header. No cookie: a browser sends a host's cookies to every port
    of it, so any other local program the browser visits would receive the token."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token.encode()

    def valid(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api/") \
                or self.valid(Request(scope).headers.get("x-litemedsam-token")):
            return await self.app(scope, receive, send)
        response = JSONResponse({"error": "this server needs its token: open the address litemedsam serve printed "
                                          "(…/#token=…), or send the header X-Litemedsam-Token"}, 403)
        await response(scope, receive, send)


def api(handler, write: bool = False):
    """A JSON endpoint: errors become {"error": message} with their status; writes need X-Litemedsam: 1."""

    async def endpoint(request: Request):
        try:
            EDITOR.set(tab_of(request))  # this request's edits are its tab's (its undo takes back its own)
            if write and request.headers.get("x-litemedsam") != "1":
                raise Refused(403, "requests that change something need the header X-Litemedsam: 1")
            result = await handler(request)
            return result if isinstance(result, Response) else JSONResponse(result)
        except Exception as e:  # said, not a traceback page; the server goes on
            status, message = refusal(e)
            return JSONResponse({"error": message}, status)
    return endpoint


def tab_of(request: Request) -> str | None:
    """The browser tab a request comes from (the header ``X-Litemedsam-Tab``, a random name each tab makes once),
    None without one (a script: its edits are undone by requests without one)."""
    tab = request.headers.get("x-litemedsam-tab")
    return tab if tab is not None and 1 <= len(tab) <= 64 and tab.isascii() and tab.isprintable() else None


def in_thread(func, *args):
    """``func(*args)`` in a worker thread (never blocking the event loop), in this request's context: its edits
    are its tab's (litemedsam.serve.labelmap.EDITOR)."""
    return run_in_threadpool(contextvars.copy_context().run, func, *args)


async def json_body(request: Request) -> dict:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Refused(415, "send JSON (Content-Type: application/json)")
    return json_object(await read_body(request, MAX_JSON))


def plane_of(given) -> str:
    """A plane a request names: "z" (a volume's slices; a 2D image), "y" or "x" (cuts across the slices)."""
    if given not in ("z", "y", "x"):
        raise Refused(400, "plane must be \"z\", \"y\" or \"x\"")
    return given


def cut_of(doc: Document, body: dict) -> tuple:
    """(plane, index) of the slice or cut an edit request names ("plane", default "z", and "z": its index)."""
    plane, z = plane_of(body.get("plane", "z")), body.get("z", 0)
    if not integer(z) or not 0 <= z < doc.plane_size(plane):
        raise Refused(400, f"z must be a slice of this case (0-{doc.plane_size(plane) - 1} in plane {plane})")
    return plane, z


def small_number(text: str) -> bool:
    """Whether a URL's text is a non-negative integer that can index an image (at most 9 digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def object_label(request: Request) -> int:
    """The object label a URL names (``/objects/{label}``): 1-65535, else Refused 400 (0 is the background)."""
    text = request.path_params["label"]
    if not (small_number(text) and 1 <= int(text) <= 65535):
        raise Refused(400, f"{shown(text[:20])}: an object's label is 1-65535 (0 is the background)")
    return int(text)


def slice_index(doc: Document, text: str, plane: str = "z") -> int:
    if not small_number(text) or int(text) >= doc.plane_size(plane):
        raise Refused(404, f"no slice {shown(text[:20])} (this case has {doc.plane_size(plane)} in plane {plane})")
    return int(text)
