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

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Route

from litemedsam.serve.web import cases, edits
from litemedsam.serve.web.server import Server, TokenGate, api

__all__ = ["Server", "make_app"]


def make_app(server: Server) -> Starlette:
    """The app over ``server``'s cases: the page, and the JSON API (litemedsam.serve.web.cases, .edits)."""
    c, e = cases, edits
    routes = [
        Route("/", c.page), Route("/static/{asset}", c.page),
        Route("/api/cases", api(c.cases)),
        Route("/api/open", api(c.open_named, write=True), methods=["POST"]),
        Route("/api/upload", api(c.upload, write=True), methods=["POST"]),
        Route("/api/doc/{doc}", api(e.info)),
        Route("/api/doc/{doc}/image/{z}", api(e.image)),
        Route("/api/doc/{doc}/labels/{z}", api(e.labels)),
        Route("/api/doc/{doc}/labels.npy", api(e.label_map)),
        Route("/api/doc/{doc}/value", api(e.value)),
        Route("/api/doc/{doc}/box", api(e.box, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/line", api(e.line, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/job", api(e.job_state)),
        Route("/api/doc/{doc}/cancel", api(e.cancel, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/objects/{label}", api(e.erase, write=True), methods=["DELETE"]),
        Route("/api/doc/{doc}/objects/{label}", api(e.name, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/undo", api(e.step("undo", "undone"), write=True), methods=["POST"]),
        Route("/api/doc/{doc}/redo", api(e.step("redo", "redone"), write=True), methods=["POST"]),
        Route("/api/doc/{doc}/brush", api(e.brush, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/tidy", api(e.tidy, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/click", api(e.click, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/interpolate", api(e.interpolate, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/measurements", api(e.measurements)),
        Route("/api/doc/{doc}/guard", api(e.guard, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/window", api(e.window, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/save", api(e.save, write=True), methods=["POST"]),
        Route("/api/doc/{doc}/discard", api(e.step("discard", "discarded"), write=True), methods=["POST"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=server.hosts),
                                               Middleware(TokenGate, token=server.token)])
    app.state.server = server  # the endpoints' (request.app.state.server)
    return app
