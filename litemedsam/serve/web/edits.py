"""The browser app's endpoints on an open case: what the page shows (slices, labels, values under the cursor) and
every edit (a box, a propagation run as a job, a click, the brush, fill and islands, erase, names, undo, redo,
the intensity window, save, discard), each a call to the case's Document (litemedsam.serve.interactive)."""
from __future__ import annotations

import contextvars
import io
import threading

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from litemedsam.core.errors import CaseError, LitemedsamError, shown
from litemedsam.core.measure import measurements_file
from litemedsam.serve.encoding import Cancelled
from litemedsam.serve.labelmap import Guard
from litemedsam.serve.tools import voxel_of
from litemedsam.serve.http import Refused, integer, number
from litemedsam.serve.web.server import (MAX_BRUSH_POINTS, EditJob, busy, cut_of, describe, describe_guard, edited,
                                         idle, in_thread, json_body, object_label, overlay, plane_of, png, slice_index,
                                         small_number)


async def info(request: Request):
    server = request.app.state.server
    key = request.path_params["doc"]
    return describe(key, server.get(key))


async def image(request: Request):
    server = request.app.state.server
    entry = server.get(request.path_params["doc"])
    doc, plane = entry.doc, plane_of(request.query_params.get("plane", "z"))
    z = slice_index(doc, request.path_params["z"], plane)
    if doc.case.dim == "3D" and plane == "z":
        server.warm(entry, z)
    return png(doc.image_slice(z, plane))


async def labels(request: Request):
    """A slice's objects as an RGBA image; ``hide=1,4``: without those objects (the page's hidden ones)."""
    server = request.app.state.server
    doc, plane = server.get(request.path_params["doc"]).doc, plane_of(request.query_params.get("plane", "z"))
    z = slice_index(doc, request.path_params["z"], plane)
    hidden = [t for t in request.query_params.get("hide", "").split(",") if t][:1000]
    if not all(small_number(t) and int(t) <= 65535 for t in hidden):
        raise Refused(400, "hide must be object labels (1-65535) separated by commas")
    return png(overlay(doc, doc.label_slice(z, plane), {int(t) for t in hidden}))


async def value(request: Request):
    server = request.app.state.server
    doc, at = server.get(request.path_params["doc"]).doc, request.query_params
    voxel = [at.get(k, "") for k in "zyx"]
    if doc.case.dim != "3D" or not all(small_number(v) for v in voxel) or not all(
            int(v) < n for v, n in zip(voxel, doc.labels.shape)):
        raise Refused(404, f"no voxel z={shown(voxel[0][:20])}, y={shown(voxel[1][:20])}, x={shown(voxel[2][:20])} "
                            f"in this case")
    found = await in_thread(doc.value_at, *map(int, voxel))
    return {"value": found, "unit": "HU" if found is not None and doc.modality == "CT" else ""}


async def label_map(request: Request):
    server = request.app.state.server
    doc = server.get(request.path_params["doc"]).doc
    buffer = io.BytesIO()
    np.save(buffer, doc.labels, allow_pickle=False)
    return Response(buffer.getvalue(), media_type="application/octet-stream", headers={"Cache-Control": "no-store"})


async def box(request: Request):
    entry = request.app.state.server.get(request.path_params["doc"])
    doc = entry.doc
    label, coords, mode, (plane, z), z_range = box_request(doc, await json_body(request))
    idle(entry)
    if doc.flat(coords, z, plane):  # the model would still outline something there: nothing is what is there
        raise Refused(422, "nothing to segment in the box: the image is one grey there (air, or a border); "
                           "draw it around the structure")
    was = doc.has(label) if label is not None and mode == "replace" else 0
    if doc.case.dim == "3D" and z_range is not None and z_range[0] != z_range[1]:
        def work(job: EditJob) -> int:
            mask, score = doc.box_mask(coords, z, z_range, job.report)
            job.check()  # a cancel asked for meanwhile: the labels stay as they were
            painted = doc.paint(mask, label, tuple(z_range), mode == "add")
            doc.confidence[painted] = score
            return painted
        start(entry, EditJob(label, was=was), work)
        return {"job": True}
    mask, score = await in_thread(doc.box_mask, coords, z, None, None, plane)
    label = doc.paint(mask, label, (z, z) if z_range is None else tuple(z_range), mode == "add", plane)
    doc.confidence[label] = score
    return {"label": label, "was": was, **edited(doc)}


def box_request(doc, body: dict) -> tuple:
    """(label or None, [x0, y0, x1, y1], mode, (plane, index), z_range or None) of a box request, checked."""
    label = body.get("label")
    if label is not None and not (integer(label) and 1 <= label <= 65535):
        raise Refused(400, "label must be an integer 1-65535")
    coords = body.get("box")
    if not (isinstance(coords, list) and len(coords) == 4 and all(map(number, coords))):
        raise Refused(400, "box must be [x0, y0, x1, y1]")
    mode = body.get("mode", "new")
    if mode not in ("new", "replace", "add"):
        raise Refused(400, "mode must be \"new\", \"replace\" or \"add\"")
    if label is not None and mode == "new" and doc.has(label):
        raise Refused(409, f"label {label} is already an object ({doc.has(label)} voxels): redraw it (mode "
                            f"\"replace\", or select it on the page), add a region to it (mode \"add\"), or choose "
                            f"a free label")
    if label is None and mode != "new":
        raise Refused(400, f"mode {mode!r} needs the label of the object")
    (plane, z), z_range = cut_of(doc, body), body.get("z_range")
    if z_range is not None and not (isinstance(z_range, list) and len(z_range) == 2 and all(map(integer, z_range))):
        raise Refused(400, "z_range must be [first, last] slice indices")
    if plane != "z" and z_range is not None and z_range[0] != z_range[1]:
        raise Refused(400, f"a box on a {plane} cut segments that cut alone: propagation runs over slices (plane z)")
    if z_range is not None and not min(z_range) <= z <= max(z_range):
        raise Refused(400, f"slice {z} is not within the range given {z_range}")
    return label, coords, mode, (plane, z), z_range


async def line(request: Request):
    """A RECIST line (a lesion's longest diameter) drawn on a cut of a volume: its lesion in 3D, a new object (or
    ``label``), run as a job the page follows (Scene.from_line)."""
    server = request.app.state.server
    entry = server.get(request.path_params["doc"])
    doc, body = entry.doc, await json_body(request)
    if doc.case.dim != "3D":
        raise Refused(400, "a RECIST line gives a lesion in a volume: draw a box on a 2D image")
    plane, z = cut_of(doc, body)
    ends, label = body.get("line"), body.get("label")
    h, w = doc.label_slice(z, plane).shape
    if not (isinstance(ends, list) and len(ends) == 4 and all(map(number, ends))
            and 0 <= ends[0] < w and 0 <= ends[2] < w and 0 <= ends[1] < h and 0 <= ends[3] < h):
        raise Refused(400, f"line must be [x0, y0, x1, y1], both ends inside the {w} x {h} image")
    if label is not None and not (integer(label) and 1 <= label <= 65535):
        raise Refused(400, "label must be an integer 1-65535 or null (a new object)")
    if label is not None and doc.has(label):
        raise Refused(409, f"label {label} is already an object: choose a free label (a line makes a new object)")
    idle(entry)

    def work(job: EditJob) -> int:
        mask, score = doc.from_line(ends, z, plane, job.report)
        job.check()
        painted = doc.paint(mask, label)
        doc.confidence[painted] = score
        return painted
    start(entry, EditJob(label, doing="segmenting the lesion"), work)
    return {"job": True}


def start(entry, job: EditJob, work) -> None:
    """Run ``work(job)`` (it makes its edit and returns the label edited; ``job.report`` hears its progress and
    stops it when cancelled) in a thread, as ``entry``'s job, which the page follows (progress, cancel)."""
    entry.job = job
    job.thread = threading.Thread(target=contextvars.copy_context().run, args=(run_job, job, work), daemon=True,
                                  name=f"litemedsam-{job.doing}")  # in the request's context: its tab's edit
    job.thread.start()


def run_job(job: EditJob, work) -> None:
    try:
        job.label = work(job)
        job.state = "done"
    except Cancelled:
        job.state, job.message = "cancelled", "cancelled; the labels are as before"
    except (LitemedsamError, MemoryError) as e:
        job.state, job.message = "failed", str(e) or "out of memory"
    except Exception as e:  # a bug of ours: say it on the page, keep serving
        job.state, job.message = "failed", f"internal error {type(e).__name__}: {shown(e)}"


async def window(request: Request):
    server = request.app.state.server
    entry = server.get(request.path_params["doc"])
    body = await json_body(request)
    value = body.get("window")
    if value is not None and not (isinstance(value, list) and len(value) == 2
                                  and all(number(v, 1e7) for v in value) and value[1] > 0):
        raise Refused(400, "window must be [level, width] with width > 0 (e.g. [40, 400]), or null (auto)")
    if not entry.doc.raw:
        raise Refused(400, "this case's image is already 0-255: the model window does not apply to it")
    await in_thread(idle(entry).doc.rewindow, None if value is None else (float(value[0]), float(value[1])))
    return describe(request.path_params["doc"], entry)


async def job_state(request: Request):
    server = request.app.state.server
    entry = server.get(request.path_params["doc"])
    job = entry.job
    if job is None:
        raise Refused(404, "no job on this case")
    state = {"state": job.state, "done": job.done, "total": job.total, "message": job.message, "label": job.label,
             "doing": job.doing, "was": job.was}
    if job.state == "done":
        state.update(edited(entry.doc))
    return state


async def cancel(request: Request):
    server = request.app.state.server
    entry = server.get(request.path_params["doc"])
    await json_body(request)
    if entry.job is not None:
        entry.job.cancel.set()
    return {"cancelling": busy(entry)}


async def erase(request: Request):
    server = request.app.state.server
    entry = idle(server.get(request.path_params["doc"]))
    await json_body(request)
    label = object_label(request)
    removed = await in_thread(entry.doc.erase, label)
    return {"removed": removed, **edited(entry.doc)}


def step(action: str, said: str):
    """An edit of the document that takes no arguments (undo, redo, discard): {said: its result, ...}."""
    async def endpoint(request: Request):
        entry = idle(request.app.state.server.get(request.path_params["doc"]))
        await json_body(request)
        result = await in_thread(getattr(entry.doc, action))
        return {said: result, **edited(entry.doc)}
    return endpoint


async def name(request: Request):
    server = request.app.state.server
    doc, body = server.get(request.path_params["doc"]).doc, await json_body(request)
    try:
        await in_thread(doc.name, object_label(request), body.get("name"), body.get("color"))
    except CaseError as e:
        raise Refused(400, str(e)) from None
    return edited(doc)


async def click(request: Request):
    server = request.app.state.server
    entry = idle(server.get(request.path_params["doc"]))
    doc, body = entry.doc, await json_body(request)
    plane, z = cut_of(doc, body)
    label, kind, x, y = body.get("label"), body.get("kind"), body.get("x"), body.get("y")
    if kind not in ("fg", "bg"):
        raise Refused(400, "kind must be \"fg\" (the object is here) or \"bg\" (it is not)")
    if label is not None and not (integer(label) and 1 <= label <= 65535):
        raise Refused(400, "label must be an integer 1-65535 or null (a new object)")
    h, w = doc.label_slice(z, plane).shape
    if not (integer(x) and integer(y) and 0 <= x < w and 0 <= y < h):
        raise Refused(400, f"x, y must be a pixel of the {w} x {h} image")
    z_range, region, reach_back = body.get("z_range"), body.get("region", False), body.get("reach_back", True)
    if z_range is not None and not (isinstance(z_range, list) and len(z_range) == 2 and all(map(integer, z_range))):
        raise Refused(400, "z_range must be [first, last] slice indices (where a new region may reach)")
    if not isinstance(region, bool):
        raise Refused(400, "region must be true (add the region the model finds at the click) or false")
    if not isinstance(reach_back, bool):
        raise Refused(400, "reach_back must be true (a click far from its object reaches back to it) or false "
                           "(such a click changes nothing; the answer's change says \"asked\")")
    at = voxel_of(plane, z, y, x) if doc.case.dim == "3D" else (0, y, x)
    if doc.case.dim == "3D":  # a volume's click may read many slices: a job the page follows and can cancel
        start(entry, EditJob(label, doing="clicking"),
              lambda job: doc.click(label, kind, at, (), z_range, job.report, region, reach_back))
        return {"job": True}
    painted = await in_thread(doc.click, label, kind, at, (), None, None, region, reach_back)
    return {"label": painted, **edited(doc)}


async def guard(request: Request):
    """Where edits may change the case's labels: {"over": "all" | "empty" | "inside", "inside": label or null,
    "locked": [labels]} (litemedsam.serve.labelmap.Guard)."""
    entry = idle(request.app.state.server.get(request.path_params["doc"]))
    body = await json_body(request)
    over, inside, locked = body.get("over", "all"), body.get("inside"), body.get("locked", [])
    if over not in Guard.OVER:
        raise Refused(400, "over must be \"all\", \"empty\" or \"inside\"")
    if over == "inside" and not (integer(inside) and entry.doc.has(inside)):
        raise Refused(400, "inside must be an object of this case (edits then change its voxels only)")
    if not (isinstance(locked, list) and len(locked) <= 65535 and all(integer(v) and 1 <= v <= 65535 for v in locked)):
        raise Refused(400, "locked must be a list of object labels (1-65535)")
    entry.doc.guard = Guard(over, inside if over == "inside" else None, frozenset(locked))
    return {"guard": describe_guard(entry.doc.guard), **edited(entry.doc)}


async def tidy(request: Request):
    server = request.app.state.server
    entry = idle(server.get(request.path_params["doc"]))
    doc, body = entry.doc, await json_body(request)
    (plane, z), label, action = cut_of(doc, body), body.get("label"), body.get("action")
    if not (integer(label) and doc.has(label)):
        raise Refused(400, "label must be an object of this case")
    if action not in ("fill", "islands"):
        raise Refused(400, "action must be \"fill\" (its holes) or \"islands\" (remove them)")
    changed = await in_thread(doc.tidy, z, label, action, plane)
    return {"changed": changed, **edited(doc)}


async def brush(request: Request):
    server = request.app.state.server
    entry = idle(server.get(request.path_params["doc"]))
    doc, body = entry.doc, await json_body(request)
    (plane, z), radius, label, points = cut_of(doc, body), body.get("radius"), body.get("label"), body.get("points")
    h, w = doc.label_slice(z, plane).shape
    if not integer(radius) or not 1 <= radius <= 200:
        raise Refused(400, "radius must be an integer 1-200 (pixels)")
    if label is not None and not (integer(label) and 0 <= label <= 65535):
        raise Refused(400, "label must be an integer 0-65535 (0: the eraser) or null (a new object)")
    if not (isinstance(points, list) and 1 <= len(points) <= MAX_BRUSH_POINTS and all(
            isinstance(p, list) and len(p) == 2 and number(p[0]) and number(p[1])
            and 0 <= p[0] < w and 0 <= p[1] < h for p in points)):
        raise Refused(400, f"points must be 1-{MAX_BRUSH_POINTS} [x, y] pixels inside the {w} x {h} image")
    within, sphere = body.get("within"), body.get("sphere", False)
    if within is not None and not (isinstance(within, list) and len(within) == 2 and all(number(v) for v in within)
                                   and 0 <= within[0] <= within[1] <= 255):
        raise Refused(400, "within must be [low, high], 0 <= low <= high <= 255 (the image's values as shown)")
    if not isinstance(sphere, bool):
        raise Refused(400, "sphere must be true or false")
    painted = await in_thread(doc.brush, z, points, radius, label, plane, within, sphere)
    return {"label": painted, **edited(doc)}


async def interpolate(request: Request):
    """Object ``label`` filled between the cuts where it was drawn (Scene.interpolate)."""
    entry = idle(request.app.state.server.get(request.path_params["doc"]))
    doc, body = entry.doc, await json_body(request)
    label, plane = body.get("label"), plane_of(body.get("plane", "z"))
    if not (integer(label) and doc.has(label)):
        raise Refused(400, "label must be an object of this case")
    added = await in_thread(doc.interpolate, label, plane)
    return {"added": added, **edited(doc)}


async def measurements(request: Request):
    """Each object's measurements (litemedsam.serve.interactive.Document.measure)."""
    doc = request.app.state.server.get(request.path_params["doc"]).doc
    return {"objects": await in_thread(doc.measure)}


async def save(request: Request):
    """Save the case: refused while a job runs on it (its object would be missing from the output, 409), and for a
    case nobody drew on (no object, no edit, no output yet: 409) unless ``{"empty": true}`` asks for an empty
    segmentation."""
    server = request.app.state.server
    entry = idle(server.get(request.path_params["doc"]))
    body = await json_body(request)
    empty = body.get("empty", False)
    if not isinstance(empty, bool):
        raise Refused(400, "empty must be true (save an empty segmentation) or false")
    doc = entry.doc
    if not empty and not doc.unsaved and not doc.objects() and not doc.target.exists():
        raise Refused(409, f"nothing is drawn on {shown(entry.name)}: not saved (Save again, or send "
                           f"{{\"empty\": true}}, to save an empty segmentation)")
    server.output_dir.mkdir(parents=True, exist_ok=True)
    target = await in_thread(entry.doc.save)
    return {"saved": target.name, "folder": str(target.parent), **edited(entry.doc),
            "measurements": None if entry.doc.measure_problem else measurements_file(target).name,
            "problem": entry.doc.measure_problem}
