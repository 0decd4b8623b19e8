"""The web app of ``litemedsam serve`` (Starlette, an ASGI app run by uvicorn): the page and its assets (all in
this package, nothing from the network) and a small JSON API over litemedsam.serve.interactive.

Files: cases are opened by their name in the listing of FOLDER (never by a path from the request) or uploaded
(size-limited, kept in a private temporary folder); labels are saved only as the case's output name in the
output folder. Every API request must carry the server's token (a random secret made at start and printed in
the address to open, as Jupyter does) in the header ``X-Litemedsam-Token`` (``TokenGate``): the page takes it
from the address's fragment (``/#token=...``); without it, 403 (other local users, other sites and other local
programs get nothing). Every request that changes something must also carry the header ``X-Litemedsam: 1``,
which a page of another site cannot send without a CORS preflight that this app never grants; the Host header
must be one of the names the server accepts (no DNS rebinding). A case is one document whoever opens it (two
tabs see and save the same edits). Model runs happen in worker threads: a page's requests never wait for
another case's encoder, and a 3D propagation runs as a job that reports progress and can be cancelled.
"""
from __future__ import annotations

import colorsys
import hmac
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from litemedsam.core.errors import CaseError, LitemedsamError, ModelError, shown
from litemedsam.run.folders import list_cases
from litemedsam.io.formats.registry import numbered, output_name, output_owners, suffix
from litemedsam.io import formats
from litemedsam.serve.interactive import Cancelled, Document, EmbeddingCache, open_case, voxel_of

STATIC = Path(__file__).parent / "static"
ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180)]
MAX_JSON = 65536  # bytes of a JSON request
MAX_OPEN = 4  # documents kept open; the least recently used is closed (its unsaved edits stay in its work file;
# one whose edits could not all be written there stays open)
UPLOAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-+() ]{0,200}")  # spaces as in "scan (2).nii.gz"; no separator


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """A 3D propagation running in a thread."""

    label: int | None
    done: int = 0
    total: int = 0
    state: str = "running"  # running, done, cancelled, failed
    message: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class Open:
    doc: Document
    name: str
    job: Job | None = None
    upload: Path | None = None  # the private folder of an uploaded case, removed when the case is closed
    wanted: int | None = None  # the slice to encode next in the background (the one last shown)
    warming: bool = False


class Server:
    """What the app serves: FOLDER's cases, the output folder, the open documents, one embedding cache."""

    def __init__(self, folder: Path | None, output_dir: Path, prompting, segmenters, cache_bytes: int,
                 max_upload: int, inputs=None, hosts=("127.0.0.1", "localhost"), token: str | None = None):
        self.folder, self.output_dir = folder, output_dir
        self.hosts = list(hosts)  # Host headers accepted
        self.token = token or secrets.token_urlsafe(32)  # every request must carry it (TokenGate)
        self.prompting, self.segmenters, self.inputs = prompting, segmenters, inputs
        self.cache = EmbeddingCache(cache_bytes)
        self.max_upload = max_upload
        self.docs: dict = {}  # id -> Open, least recently used first
        self.lock = threading.Lock()
        self.opening = threading.Lock()  # one open at a time: two tabs opening a case get one document
        self.uploads = Path(tempfile.mkdtemp(prefix="litemedsam-uploads-"))

    def close(self) -> None:
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
            doc = open_case(path, self.output_dir, self.prompting, self.segmenters, self.cache, self.inputs, target)
            return self.add(doc, name, upload)

    def add(self, doc: Document, name: str, upload: Path | None = None) -> str:
        key = uuid.uuid4().hex
        with self.lock:
            self.docs[key] = Open(doc, name, upload=upload)
            idle = [k for k, o in self.docs.items() if not busy(o) and not o.doc.behind]
            for old in idle[:max(0, len(self.docs) - MAX_OPEN)]:  # oldest first; never one propagating
                closed = self.docs.pop(old)
                if closed.upload is not None:
                    shutil.rmtree(closed.upload, ignore_errors=True)
        return key

    def warm(self, entry: Open, z: int) -> None:
        """Encode slice ``z`` in the background (only the last slice asked for waits; errors show at the box)."""
        with self.lock:
            entry.wanted = z
            if entry.warming:
                return
            entry.warming = True

        def run():
            while True:
                with self.lock:
                    z, entry.wanted = entry.wanted, None
                    if z is None:
                        entry.warming = False
                        return
                try:
                    entry.doc.warm(z)
                except Exception:  # said when a box is drawn
                    pass
        threading.Thread(target=run, daemon=True).start()

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

    def get(self, key: str) -> Open:
        with self.lock:
            found = self.docs.get(key)
            if found is None:
                raise ApiError(404, "this case is no longer open (reopen it)")
            self.docs[key] = self.docs.pop(key)  # most recently used last
            return found


def busy(entry: Open) -> bool:
    return entry.job is not None and entry.job.state == "running"


def idle(entry: Open) -> Open:
    """``entry``, or ApiError 409 while a propagation runs on it."""
    if busy(entry):
        raise ApiError(409, "a propagation is running on this case; wait for it or cancel it")
    return entry


MAX_BRUSH_POINTS = 10000  # points of one brush stroke


def number(value, limit: float = 1e9) -> bool:
    """A JSON number (not a boolean) of magnitude below ``limit``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < limit


def integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@lru_cache(maxsize=65536)
def colour(label: int) -> tuple:
    """The palette's distinct colours for the first labels, then hues a golden angle apart (never repeating)."""
    if label <= len(PALETTE):
        return PALETTE[label - 1]
    h, s, v = (label * 0.6180339887) % 1.0, 0.65 + 0.3 * ((label * 7) % 3) / 2, 0.95
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, min(s, 0.95), v))


def describe(key: str, entry: Open) -> dict:
    doc = entry.doc
    shape = doc.labels.shape if doc.case.dim == "3D" else (1, *doc.labels.shape)
    try:
        model = doc.model_for()
    except LitemedsamError as e:
        model = f"none ({e})"
    return {"id": key, "name": entry.name, "dim": doc.case.dim, "depth": shape[0], "height": shape[1],
            "width": shape[2], "model": model, "output": doc.target.name, **edited(doc),
            "raw": doc.raw, "window": doc.window, "display": formats.display(doc.case),
            "notice": doc.notice, "readonly": doc.readonly}


def edited(doc: Document) -> dict:
    """What the page shows after an edit: the objects, and whether edits are not saved yet (they are kept in
    the work file; ``problem``: why they could not be)."""
    return {"objects": objects(doc), "unsaved": doc.unsaved, "problem": doc.autosave_problem}


def objects(doc: Document) -> list:
    """Each object's label, voxels, colour, the confidence of the box that made it (the decoder's predicted IoU;
    None for objects from a file or the brush) and, for a volume with a spacing, its volume in mL."""
    mm3 = formats.voxel_mm3(doc.case) if doc.case.dim == "3D" else None
    return [{"label": label, "voxels": voxels, "color": shade(doc, label), "name": doc.names.get(label, {}).get("name", ""),
             "confidence": doc.confidence.get(label), "ml": round(voxels * mm3 / 1000, 3) if mm3 else None}
            for label, voxels in doc.objects()]


def shade(doc: Document, label: int) -> tuple:
    """An object's colour: the one the user gave it, else the palette's."""
    given = doc.names.get(label, {}).get("color")
    return tuple(given) if given else colour(label)


def png(image: np.ndarray) -> Response:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return Response(data.tobytes(), media_type="image/png", headers={"Cache-Control": "no-store"})


def overlay(doc: Document, labels: np.ndarray) -> np.ndarray:
    """An RGBA image of a label slice: each object in its colour, background transparent."""
    colours = np.zeros((int(labels.max(initial=0)) + 1, 4), np.uint8)
    for label in range(1, len(colours)):
        colours[label] = (*shade(doc, label), 255)
    return colours[labels]


def make_app(server: Server) -> Starlette:
    async def page(request: Request):
        name = request.path_params.get("asset", "index.html")
        if name not in ASSETS:
            return JSONResponse({"error": "not found"}, 404)
        return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    async def cases(request: Request):
        found = await run_in_threadpool(server.cases)
        return {"folder": str(server.folder) if server.folder else None, "output": str(server.output_dir),
                "cases": [{"name": n, "segmented": (server.output_dir / output_name(p)).is_file()}
                          for n, p in found.items()]}

    async def open_named(request: Request):
        body = await json_body(request)
        name = body.get("name")
        found = await run_in_threadpool(server.cases)
        if not isinstance(name, str) or name not in found:
            raise ApiError(404, f"{shown(str(name))!r} is not a case of the served folder")
        owner = output_owners(found.values())[output_name(found[name])]
        if owner != name:  # as infer: the first case of the folder owns an output name
            raise ApiError(409, f"{shown(name)}: its output {shown(output_name(found[name]))} is also the output of "
                                f"{shown(owner)} (2D images are saved as .png); rename one of them")
        return await opened(found[name], name)

    async def opened(path: Path, name: str, upload: Path | None = None):
        try:
            target = None if upload is None else await run_in_threadpool(server.upload_target, path)
            key = await run_in_threadpool(server.open, path, name, target, upload)
        except BaseException as e:
            if upload is not None:  # nothing of a file that cannot be opened is kept
                shutil.rmtree(upload, ignore_errors=True)
            if isinstance(e, LitemedsamError):
                e.args = (f"{shown(name)}: {e}",)  # as infer says it: the file, then the problem
            raise
        entry = server.get(key)
        try:
            await run_in_threadpool(entry.doc.warm, entry.doc.depth // 2)  # the slice shown first: its first box is quick
        except LitemedsamError:
            pass  # no model for this case: said when a box is drawn
        return describe(key, entry)

    async def upload(request: Request):
        name = request.query_params.get("name", "")
        series = name.lower().endswith(".zip") and len(name) > 4
        if not UPLOAD_NAME.fullmatch(name) or (suffix(name) is None and not series) or ".." in name:
            raise ApiError(400, f"{shown(name)!r}: upload a case file (.npz, .nii.gz, .nrrd, .mha, .png, .jpg, "
                                f".tif, .bmp, or a .zip of one DICOM series) named with letters, digits, spaces and "
                                f"'.', '_', '-', '+', '(' or ')'")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > server.max_upload):
            raise ApiError(413, f"{shown(name)}: larger than the upload limit ({server.max_upload >> 20} MiB)")
        folder = Path(tempfile.mkdtemp(dir=server.uploads))
        try:  # nothing of an upload that does not open is kept: too large, cut off by the client, not a case
            path = folder / name
            size = 0
            with open(path, "xb") as handle:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > server.max_upload:
                        raise ApiError(413, f"{shown(name)}: larger than the upload limit "
                                            f"({server.max_upload >> 20} MiB)")
                    handle.write(chunk)
            if series:  # a DICOM series: its files, flattened and renamed, in a folder named as the archive
                try:
                    path = await run_in_threadpool(unpack_series, path, folder / name[:-4], server.max_upload)
                except CaseError as e:
                    raise CaseError(f"{shown(name)}: {e}") from None
                (folder / name).unlink()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return await opened(path, name[:-4] if series else name, folder)

    async def info(request: Request):
        key = request.path_params["doc"]
        return describe(key, server.get(key))

    async def image(request: Request):
        entry = server.get(request.path_params["doc"])
        doc, plane = entry.doc, plane_of(request.query_params.get("plane", "z"))
        z = slice_index(doc, request.path_params["z"], plane)
        if doc.case.dim == "3D" and plane == "z":
            server.warm(entry, z)
        return png(doc.image_slice(z, plane))

    async def labels(request: Request):
        doc, plane = server.get(request.path_params["doc"]).doc, plane_of(request.query_params.get("plane", "z"))
        z = slice_index(doc, request.path_params["z"], plane)
        return png(overlay(doc, doc.label_slice(z, plane)))

    async def value(request: Request):
        doc, at = server.get(request.path_params["doc"]).doc, request.query_params
        voxel = [at.get(k, "") for k in "zyx"]
        if doc.case.dim != "3D" or not all(small_number(v) for v in voxel) or not all(
                int(v) < n for v, n in zip(voxel, doc.labels.shape)):
            raise ApiError(404, f"no voxel z={shown(voxel[0][:20])}, y={shown(voxel[1][:20])}, x={shown(voxel[2][:20])} "
                                f"in this case")
        found = await run_in_threadpool(doc.value_at, *map(int, voxel))
        return {"value": found, "unit": "HU" if found is not None and doc.modality == "CT" else ""}

    async def label_map(request: Request):
        doc = server.get(request.path_params["doc"]).doc
        buffer = io.BytesIO()
        np.save(buffer, doc.labels, allow_pickle=False)
        return Response(buffer.getvalue(), media_type="application/octet-stream", headers={"Cache-Control": "no-store"})

    async def box(request: Request):
        key = request.path_params["doc"]
        entry = server.get(key)
        doc, body = entry.doc, await json_body(request)
        label = body.get("label")
        if label is not None and not (integer(label) and 1 <= label <= 65535):
            raise ApiError(400, "label must be an integer 1-65535")
        coords = body.get("box")
        if not (isinstance(coords, list) and len(coords) == 4 and all(map(number, coords))):
            raise ApiError(400, "box must be [x0, y0, x1, y1]")
        mode = body.get("mode", "new")
        if mode not in ("new", "replace", "add"):
            raise ApiError(400, "mode must be \"new\", \"replace\" or \"add\"")
        if label is not None and mode == "new" and doc.has(label):
            raise ApiError(409, f"label {label} is already an object ({doc.has(label)} voxels): redraw it (mode "
                                f"\"replace\", or select it on the page), add a region to it (mode \"add\"), or choose "
                                f"a free label")
        if label is None and mode != "new":
            raise ApiError(400, f"mode {mode!r} needs the label of the object")
        (plane, z), z_range = cut_of(doc, body), body.get("z_range")
        if z_range is not None and not (isinstance(z_range, list) and len(z_range) == 2 and all(map(integer, z_range))):
            raise ApiError(400, "z_range must be [first, last] slice indices")
        if plane != "z" and z_range is not None and z_range[0] != z_range[1]:
            raise ApiError(400, f"a box on a {plane} cut segments that cut alone: propagation runs over slices (plane z)")
        if z_range is not None and not min(z_range) <= z <= max(z_range):
            raise ApiError(400, f"slice {z} is not within the range given {z_range}")
        idle(entry)
        if doc.case.dim == "3D" and z_range is not None and z_range[0] != z_range[1]:
            entry.job = job = Job(label)
            threading.Thread(target=propagate, args=(doc, job, coords, z, z_range, mode == "add"), daemon=True).start()
            return {"job": True}
        mask, score = await run_in_threadpool(doc.box_mask, coords, z, None, None, plane)
        label = doc.paint(mask, label, (z, z) if z_range is None else tuple(z_range), mode == "add", plane)
        doc.confidence[label] = score
        return {"label": label, **edited(doc)}

    def propagate(doc: Document, job: Job, coords, z, z_range, add: bool) -> None:
        def report(done, total):
            job.done, job.total = done, total
            if job.cancel.is_set():
                raise Cancelled()
        try:
            mask, score = doc.box_mask(coords, z, z_range, report)
            if job.cancel.is_set():
                raise Cancelled()
            job.label = doc.paint(mask, job.label, tuple(z_range), add)
            doc.confidence[job.label] = score
            job.state = "done"
        except Cancelled:
            job.state, job.message = "cancelled", "cancelled; the labels are as before"
        except (LitemedsamError, MemoryError) as e:
            job.state, job.message = "failed", str(e) or "out of memory"
        except Exception as e:  # a bug of ours: say it on the page, keep serving
            job.state, job.message = "failed", f"internal error {type(e).__name__}: {shown(e)}"

    async def window(request: Request):
        entry = server.get(request.path_params["doc"])
        body = await json_body(request)
        value = body.get("window")
        if value is not None and not (isinstance(value, list) and len(value) == 2
                                      and all(number(v, 1e7) for v in value) and value[1] > 0):
            raise ApiError(400, "window must be [level, width] with width > 0 (e.g. [40, 400]), or null (auto)")
        if not entry.doc.raw:
            raise ApiError(400, "this case's image is already 0-255: the model window does not apply to it")
        await run_in_threadpool(idle(entry).doc.rewindow, None if value is None else (float(value[0]), float(value[1])))
        return describe(request.path_params["doc"], entry)

    async def job_state(request: Request):
        entry = server.get(request.path_params["doc"])
        job = entry.job
        if job is None:
            raise ApiError(404, "no propagation on this case")
        state = {"state": job.state, "done": job.done, "total": job.total, "message": job.message, "label": job.label}
        if job.state == "done":
            state.update(edited(entry.doc))
        return state

    async def cancel(request: Request):
        entry = server.get(request.path_params["doc"])
        await json_body(request)
        if entry.job is not None:
            entry.job.cancel.set()
        return {"cancelling": busy(entry)}

    async def erase(request: Request):
        entry = idle(server.get(request.path_params["doc"]))
        await json_body(request)
        label = object_label(request)
        removed = await run_in_threadpool(entry.doc.erase, label)
        return {"removed": removed, **edited(entry.doc)}

    def step(action: str, said: str):
        """An edit of the document that takes no arguments (undo, redo, discard): {said: its result, ...}."""
        async def endpoint(request: Request):
            entry = idle(server.get(request.path_params["doc"]))
            await json_body(request)
            result = await run_in_threadpool(getattr(entry.doc, action))
            return {said: result, **edited(entry.doc)}
        return endpoint

    async def name(request: Request):
        doc, body = server.get(request.path_params["doc"]).doc, await json_body(request)
        try:
            await run_in_threadpool(doc.name, object_label(request), body.get("name"), body.get("color"))
        except CaseError as e:
            raise ApiError(400, str(e)) from None
        return edited(doc)

    async def click(request: Request):
        entry = idle(server.get(request.path_params["doc"]))
        doc, body = entry.doc, await json_body(request)
        plane, z = cut_of(doc, body)
        label, kind, x, y = body.get("label"), body.get("kind"), body.get("x"), body.get("y")
        if kind not in ("fg", "bg"):
            raise ApiError(400, "kind must be \"fg\" (the object is here) or \"bg\" (it is not)")
        if label is not None and not (integer(label) and 1 <= label <= 65535):
            raise ApiError(400, "label must be an integer 1-65535 or null (a new object)")
        h, w = doc.label_slice(z, plane).shape
        if not (integer(x) and integer(y) and 0 <= x < w and 0 <= y < h):
            raise ApiError(400, f"x, y must be a pixel of the {w} x {h} image")
        at = voxel_of(plane, z, y, x) if doc.case.dim == "3D" else (0, y, x)
        painted = await run_in_threadpool(doc.click, label, kind, at)
        return {"label": painted, **edited(doc)}

    async def tidy(request: Request):
        entry = idle(server.get(request.path_params["doc"]))
        doc, body = entry.doc, await json_body(request)
        (plane, z), label, action = cut_of(doc, body), body.get("label"), body.get("action")
        if not (integer(label) and doc.has(label)):
            raise ApiError(400, "label must be an object of this case")
        if action not in ("fill", "islands"):
            raise ApiError(400, "action must be \"fill\" (its holes) or \"islands\" (remove them)")
        changed = await run_in_threadpool(doc.tidy, z, label, action, plane)
        return {"changed": changed, **edited(doc)}

    async def brush(request: Request):
        entry = idle(server.get(request.path_params["doc"]))
        doc, body = entry.doc, await json_body(request)
        (plane, z), radius, label, points = cut_of(doc, body), body.get("radius"), body.get("label"), body.get("points")
        h, w = doc.label_slice(z, plane).shape
        if not integer(radius) or not 1 <= radius <= 200:
            raise ApiError(400, "radius must be an integer 1-200 (pixels)")
        if label is not None and not (integer(label) and 0 <= label <= 65535):
            raise ApiError(400, "label must be an integer 0-65535 (0: the eraser) or null (a new object)")
        if not (isinstance(points, list) and 1 <= len(points) <= MAX_BRUSH_POINTS and all(
                isinstance(p, list) and len(p) == 2 and number(p[0]) and number(p[1])
                and 0 <= p[0] < w and 0 <= p[1] < h for p in points)):
            raise ApiError(400, f"points must be 1-{MAX_BRUSH_POINTS} [x, y] pixels inside the {w} x {h} image")
        painted = await run_in_threadpool(doc.brush, z, points, radius, label, plane)
        return {"label": painted, **edited(doc)}


    async def save(request: Request):
        entry = server.get(request.path_params["doc"])
        await json_body(request)
        server.output_dir.mkdir(parents=True, exist_ok=True)
        target = await run_in_threadpool(entry.doc.save)
        return {"saved": target.name, "folder": str(target.parent), **edited(entry.doc)}

    routes = [
        Route("/", page), Route("/static/{asset}", page),
        Route("/api/cases", api(cases)),
        Route("/api/open", api(open_named, write=True), methods=["POST"]),
        Route("/api/upload", api(upload, write=True), methods=["POST"]),
        Route("/api/doc/{doc}", api(info)),
        Route("/api/doc/{doc}/image/{z}", api(image)),
        Route("/api/doc/{doc}/labels/{z}", api(labels)),
        Route("/api/doc/{doc}/labels.npy", api(label_map)),
        Route("/api/doc/{doc}/value", api(value)),
        Route("/api/doc/{doc}/box", api(box, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/job", api(job_state)),
        Route("/api/doc/{doc}/cancel", api(cancel, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/objects/{label}", api(erase, write=True), methods=["DELETE"]),
        Route("/api/doc/{doc}/objects/{label}", api(name, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/undo", api(step("undo", "undone"), write=True), methods=["POST"]),
        Route("/api/doc/{doc}/redo", api(step("redo", "redone"), write=True), methods=["POST"]),
        Route("/api/doc/{doc}/brush", api(brush, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/tidy", api(tidy, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/click", api(click, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/window", api(window, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/save", api(save, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/discard", api(step("discard", "discarded"), write=True), methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=server.hosts),
                                                Middleware(TokenGate, token=server.token)])


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
            if write and request.headers.get("x-litemedsam") != "1":
                raise ApiError(403, "requests that change something need the header X-Litemedsam: 1")
            result = await handler(request)
            return result if isinstance(result, Response) else JSONResponse(result)
        except ApiError as e:
            return JSONResponse({"error": str(e)}, e.status)
        except ModelError as e:
            return JSONResponse({"error": f"the model cannot run: {e}"}, 503)
        except LitemedsamError as e:
            return JSONResponse({"error": str(e)}, 422)
        except MemoryError:
            return JSONResponse({"error": "out of memory"}, 507)
        except OSError as e:
            return JSONResponse({"error": f"{shown(e.filename or '')}: {e.strerror or e}"}, 500)
        except Exception as e:  # a bug of ours: said, not a traceback page; the server goes on
            return JSONResponse({"error": f"internal error {type(e).__name__}: {shown(e)}"}, 500)
    return endpoint


async def json_body(request: Request) -> dict:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "send JSON (Content-Type: application/json)")
    body = b""
    async for chunk in request.stream():  # never more than MAX_JSON in memory, whatever the client says
        body += chunk
        if len(body) > MAX_JSON:
            raise ApiError(413, "request too large")
    try:
        data = json.loads(body or b"{}", parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "the request body is not JSON (or nested too deeply)") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def unpack_series(archive: Path, target: Path, limit: int, max_files: int = 20000) -> Path:
    """The files of a .zip of one DICOM series, written as target/000000.dcm, ... (member names are never used
    as paths); CaseError for an archive that is not a zip, holds too many files, or unpacks past ``limit``."""
    target.mkdir()
    try:
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            if not members or len(members) > max_files:
                raise CaseError(f"a DICOM series archive holds 1-{max_files} files, this one {len(members)}")
            total = 0
            for n, member in enumerate(members):
                with z.open(member) as source, open(target / f"{n:06d}.dcm", "xb") as out:
                    while chunk := source.read(1 << 20):
                        total += len(chunk)
                        if total > limit:
                            raise CaseError(f"it unpacks to more than the upload limit ({limit >> 20} MiB)")
                        out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, RuntimeError, zlib.error,
            ValueError) as e:
        raise CaseError(f"not a zip archive litemedsam can unpack ({type(e).__name__}: {shown(e)})") from None
    return target


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def plane_of(given) -> str:
    """A plane a request names: "z" (a volume's slices; a 2D image), "y" or "x" (cuts across the slices)."""
    if given not in ("z", "y", "x"):
        raise ApiError(400, "plane must be \"z\", \"y\" or \"x\"")
    return given


def cut_of(doc: Document, body: dict) -> tuple:
    """(plane, index) of the slice or cut an edit request names ("plane", default "z", and "z": its index)."""
    plane, z = plane_of(body.get("plane", "z")), body.get("z", 0)
    if not integer(z) or not 0 <= z < doc.plane_size(plane):
        raise ApiError(400, f"z must be a slice of this case (0-{doc.plane_size(plane) - 1} in plane {plane})")
    return plane, z


def small_number(text: str) -> bool:
    """Whether a URL's text is a non-negative integer that can index an image (at most 9 digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def object_label(request: Request) -> int:
    """The object label a URL names (``/objects/{label}``): 1-65535, else ApiError 400 (0 is the background)."""
    text = request.path_params["label"]
    if not (small_number(text) and 1 <= int(text) <= 65535):
        raise ApiError(400, f"{shown(text[:20])}: an object's label is 1-65535 (0 is the background)")
    return int(text)


def slice_index(doc: Document, text: str, plane: str = "z") -> int:
    if not small_number(text) or int(text) >= doc.plane_size(plane):
        raise ApiError(404, f"no slice {shown(text[:20])} (this case has {doc.plane_size(plane)} in plane {plane})")
    return int(text)
