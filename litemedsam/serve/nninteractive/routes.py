"""The protocol's HTTP endpoints (nnInteractive's server, as its client calls them) and the Starlette app."""
from __future__ import annotations

import asyncio
import hmac
import json
import threading

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from litemedsam.serve import wire
from litemedsam.serve.http import Refused, json_object, read_body, refusal
from litemedsam.serve.nninteractive.protocol import (CAPABILITIES, LEASE, MAX_JSON, MAX_WAITING, META, Lease,
                                                     Protocol, log)


async def json_body(request: Request) -> dict:
    return json_object(await read_body(request, MAX_JSON))


def meta(request: Request) -> dict:
    raw = request.headers.get(META)
    if raw is not None and len(raw) > MAX_JSON:
        raise Refused(400, f"{META} is too long")
    return json_object(raw or "", META)


def flag(payload: dict, name: str, default: bool | None = None) -> bool:
    value = payload.get(name, default)
    if not isinstance(value, bool):
        raise Refused(400, f"{name} must be true or false")
    return value


def answer(ran: bool, bbox, region) -> Response:
    info = {"ran_prediction": bool(ran), "bbox": bbox}
    content = b""
    if bbox is not None:
        info.update(dtype=str(region.dtype), shape=list(region.shape))
        content = wire.pack(region)
    return Response(content, media_type="application/octet-stream",
                    headers={META: json.dumps(info, separators=(",", ":"))})


def guarded(handler, lease: str | None = "active"):
    """A route of ``handler(protocol, request[, lease])``: the key checked (401), the lease looked up (410; ``lease``
    None: no lease, else how it is touched: Protocol.get), Refused answered with its status and detail, anything
    else a 500 that says no more."""
    async def route(request: Request):
        protocol = request.app.state.protocol
        try:
            given = request.headers.get("authorization", "")
            key = protocol.options.key.encode()
            if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), key)):
                raise Refused(401, "missing or wrong API key (Authorization: Bearer ...): this server always requires "
                                   "one, on localhost too; it is the one printed at its start (a new one at each "
                                   "start unless $NN_INTERACTIVE_API_KEY or --api-key-file sets it), so a server "
                                   "restarted since needs its key set again in the client")
            if lease is None:
                return await handler(protocol, request)
            return await handler(protocol, request, protocol.get(request.headers.get(LEASE), lease))
        except Exception as e:  # said in one line (the same words as the app's), never a traceback
            if not isinstance(e, Refused):
                log.exception("answering %s", request.url.path)
            status, message = refusal(e)
            return JSONResponse({"detail": message}, status, headers={"Retry-After": "10"} if status == 503 else None)
    return route


async def healthz(request: Request):
    return JSONResponse({"ok": True})


async def capabilities(protocol: Protocol, request: Request):
    return JSONResponse(CAPABILITIES)


async def claim(protocol: Protocol, request: Request):
    lease = protocol.claim()
    return JSONResponse({"lease_token": lease.token, "idle_timeout_seconds": protocol.options.idle_timeout,
                         "liveness_timeout_seconds": protocol.options.liveness_timeout,
                         "max_sessions": protocol.options.max_sessions})


async def release(protocol: Protocol, request: Request):
    protocol.release(request.headers.get(LEASE))
    return JSONResponse({"released": True})


async def heartbeat(protocol: Protocol, request: Request, lease: Lease):
    return JSONResponse({"remaining_seconds": protocol.remaining(lease)})


async def lease_status(protocol: Protocol, request: Request, lease: Lease):
    scene = lease.scene  # and (litemedsam's) how many slices of the image are encoded ahead, of how many, and
    # whether an interaction of the lease is being computed
    return JSONResponse({"remaining_seconds": protocol.remaining(lease), "idle_timeout_seconds":
                         protocol.options.idle_timeout, "encoded_slices":
                         len(lease.encoding.ready) if lease.encoding is not None else 0,
                         "slices": scene.depth if scene is not None else 0, "interacting": lease.running,
                         # and, for a plane a box was drawn on ("y", "x"), its cuts encoded ahead, of how many
                         "encoded_cuts": {plane: [len(e.ready), scene.plane_size(plane)]
                                          for plane, e in list(lease.across.items()) if scene is not None}})


async def set_image(protocol: Protocol, request: Request, lease: Lease):
    info = meta(request)
    properties = info.get("image_properties") or {}
    if not isinstance(properties, dict):
        raise Refused(400, "image_properties must be a JSON object")
    data = await read_body(request, protocol.options.max_image_bytes + (1 << 20))

    def work(lease):
        try:
            protocol.check_image(*wire.header(data)[:2])  # from its header, before anything is decompressed
            image = wire.unpack(data, protocol.options.max_image_bytes)
        except ValueError as e:
            raise Refused(400, f"the image: {e}") from None
        return protocol.set_image(lease, image, properties)
    shape = await locked(lease, work)
    return JSONResponse({"original_image_shape": shape})


async def locked(lease: Lease, work, *args):
    """``work(lease, *args)`` in the lease's turn, in a worker thread (never blocking the event loop). A request
    waits for its turn without holding a thread, so one client's queue never delays another's requests; past
    MAX_WAITING waiting, a lease's request is refused (429)."""
    if lease.waiting >= MAX_WAITING:
        raise Refused(429, f"this lease already has {lease.waiting} requests waiting for the one running: wait for "
                           f"their answers")
    lease.waiting += 1
    waiting = True
    try:
        async with lease.turn:
            lease.waiting, waiting = lease.waiting - 1, False
            return await run_in_threadpool(work, lease, *args)
    finally:
        if waiting:  # cancelled while it waited (the client went away)
            lease.waiting -= 1


async def set_target_buffer(protocol: Protocol, request: Request, lease: Lease):
    payload = await json_body(request)
    await locked(lease, protocol.set_target, payload)
    return JSONResponse({})


async def set_do_autozoom(protocol: Protocol, request: Request, lease: Lease):
    flag(await json_body(request), "do_autozoom")  # checked; LiteMedSAM has no zoom to turn off
    return JSONResponse({})


async def reset_interactions(protocol: Protocol, request: Request, lease: Lease):
    await locked(lease, protocol.reset)
    return JSONResponse({})


BEHIND: set = set()  # work answered before it ended (kept here: the event loop holds its tasks weakly)


async def answered(protocol: Protocol, lease: Lease, work, keep: bool = True) -> Response:
    """``work(lease)`` (-> whether a prediction ran) in the lease's turn, answered with every voxel changed since
    the lease's last answer: when it is done, or at ``answer_within`` seconds if it is not (a cold box over a long
    volume; the client's read timeout is 60 s, Slicer's too), with what is done. Then the work goes on (or,
    not ``keep``, is dropped if it has not started: a /predict that waited behind such work) and its edits come
    with the next answer (the next interaction's, or a /predict), lease_status saying "interacting" until it
    ends."""
    job = asyncio.ensure_future(locked(lease, work))
    job.add_done_callback(ended)
    done, _ = await asyncio.wait({job}, timeout=protocol.options.answer_within)
    if job in done:
        ran = job.result()  # (Refused: answered as such)
    elif not keep:
        job.cancel()
        ran = False
    else:
        BEHIND.add(job)
        log.info("an interaction still runs after %g s: answered with what is done, the rest comes with the "
                 "next answer", protocol.options.answer_within)
        ran = True
    bbox, region = await run_in_threadpool(protocol.region, lease)
    return answer(ran or bbox is not None, bbox, region)


def ended(job: asyncio.Future) -> None:
    """Work answered early that ended in an error is said in the log (its client heard the answer already)."""
    error = None if job.cancelled() else job.exception()
    if job in BEHIND:
        BEHIND.discard(job)
        if isinstance(error, Exception):
            log.warning("an interaction answered early ended without its result: %s", refusal(error)[1])


async def interaction(protocol: Protocol, request: Request, lease: Lease, make, run: bool):
    """An interaction's answer (``answered``); if its client goes away before it (the client gave up), the work is
    stopped at its next slice rather than finished for nobody."""
    gone = threading.Event()
    watcher = asyncio.ensure_future(watch_disconnect(request, gone))
    try:
        return await answered(protocol, lease, lambda lease: protocol.interact(lease, make(), run, gone))
    finally:
        watcher.cancel()


async def watch_disconnect(request: Request, gone: threading.Event) -> None:
    """Set ``gone`` when the request's client disconnects (its body already read: the next message is that)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def add_bbox(protocol: Protocol, request: Request, lease: Lease):
    p = await json_body(request)
    include, run = flag(p, "include_interaction"), flag(p, "run_prediction", True)
    return await interaction(protocol, request, lease,
                             lambda: protocol.box_action(lease, p.get("bbox_coords"), include), run)


async def add_point(protocol: Protocol, request: Request, lease: Lease):
    p = await json_body(request)
    include, run = flag(p, "include_interaction"), flag(p, "run_prediction", True)
    return await interaction(protocol, request, lease,
                             lambda: protocol.point_action(lease, p.get("coordinates"), include), run)


async def mask_body(protocol: Protocol, request: Request, lease: Lease) -> tuple[dict, np.ndarray]:
    info = meta(request)
    shape = protocol.ready(lease).labels.shape
    limit = int(np.prod(shape, dtype=object)) * 8
    data = await read_body(request, limit + (1 << 20))
    try:
        return info, await run_in_threadpool(wire.unpack, data, limit)
    except ValueError as e:
        raise Refused(400, f"the mask: {e}") from None


async def add_lasso(protocol: Protocol, request: Request, lease: Lease):
    info, mask = await mask_body(protocol, request, lease)
    include, run = flag(info, "include_interaction"), flag(info, "run_prediction", True)
    if mask.ndim != 3:
        raise Refused(400, f"a lasso is a 3D mask, got {mask.ndim} dimensions")
    return await interaction(protocol, request, lease,
                             lambda: protocol.lasso_action(lease, mask, info.get("interaction_bbox"), include), run)


async def add_scribble(protocol: Protocol, request: Request, lease: Lease):
    raise Refused(400, "scribbles are not supported by litemedsam (see /capabilities): use points, a box or a "
                       "lasso")


async def add_initial_seg(protocol: Protocol, request: Request, lease: Lease):
    info, seg = await mask_body(protocol, request, lease)
    run = flag(info, "run_prediction", False)

    def work(lease):
        lease.pending.clear()
        scene = protocol.ready(lease)
        owed = scene.unanswered()  # edits of work answered early, not sent yet: still owed after this one
        protocol.interact(lease, protocol.initial_action(lease, seg), True)
        if not run:  # the client already holds the mask it sent: its edits are sent back only when asked for a run
            scene.unanswered()
        scene.still_owed(owed)
        return run
    return await answered(protocol, lease, work)


async def predict(protocol: Protocol, request: Request, lease: Lease):
    await json_body(request)
    return await answered(protocol, lease, protocol.run, keep=False)


async def undo(protocol: Protocol, request: Request, lease: Lease):
    return await answered(protocol, lease, protocol.undo)


def make_app(protocol: Protocol, sweep_every: float = 5.0) -> Starlette:
    """The routes of the protocol over ``protocol`` (the endpoints: request.app.state.protocol), and a sweeper
    that drops the leases past their time every ``sweep_every`` seconds."""
    routes = [
        Route("/healthz", healthz, methods=["GET"]),  # no key: says only that the server is up
        Route("/capabilities", guarded(capabilities, None), methods=["GET"]),
        Route("/claim", guarded(claim, None), methods=["POST"]),
        Route("/release", guarded(release, None), methods=["POST"]),
        Route("/heartbeat", guarded(heartbeat, "seen"), methods=["POST"]),
        Route("/lease_status", guarded(lease_status, "peek"), methods=["GET"]),
        Route("/set_image", guarded(set_image), methods=["POST"]),
        Route("/set_target_buffer", guarded(set_target_buffer), methods=["POST"]),
        Route("/set_do_autozoom", guarded(set_do_autozoom), methods=["POST"]),
        Route("/reset_interactions", guarded(reset_interactions), methods=["POST"]),
        Route("/undo", guarded(undo), methods=["POST"]),
        Route("/predict", guarded(predict), methods=["POST"]),
        Route("/add_bbox_interaction", guarded(add_bbox), methods=["POST"]),
        Route("/add_point_interaction", guarded(add_point), methods=["POST"]),
        Route("/add_scribble_interaction", guarded(add_scribble), methods=["POST"]),
        Route("/add_lasso_interaction", guarded(add_lasso), methods=["POST"]),
        Route("/add_initial_seg_interaction", guarded(add_initial_seg), methods=["POST"]),
    ]
    stop = threading.Event()

    def sweeper():
        while not stop.wait(sweep_every):
            protocol.sweep()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        thread = threading.Thread(target=sweeper, daemon=True, name="litemedsam-lease-sweeper")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            protocol.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.protocol = protocol
    return app
