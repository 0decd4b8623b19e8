"""``litemedsam serve app [FOLDER]`` (the browser app) and ``litemedsam serve nninteractive`` (the nnInteractive
protocol for 3D Slicer, napari and scripts): two subcommands, each with its own options; the options both servers
read (address, model, router, embeddings) are decorated once (``model_flags``) and checked once into a frozen
``Served``. ``serve [FOLDER] [--protocol P]``, the form before the subcommands, still works and says so."""
from __future__ import annotations

import dataclasses
import os
import re
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from litemedsam.core.errors import UsageError, needs_extra, shown, terminate_on_sigterm

if TYPE_CHECKING:  # the types only: a command imports what it runs when it runs
    from litemedsam.io.given_boxes import CaseInputs
    from litemedsam.methods.router import Router

TOKEN_ENV = "LITEMEDSAM_SERVE_TOKEN"  # a token of your own (scripts, containers); else a random one per start
KEY_ENV = "NN_INTERACTIVE_API_KEY"  # the nnInteractive protocol's key: the variable its client reads too
HOST_NAME = re.compile(r"[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
PORTS = {"app": 8765, "nninteractive": 1527}  # nnInteractive's server listens on 1527 too


class ServeCommands(click.Group):
    """``serve app`` and ``serve nninteractive``; any other first word is the older form ``serve [FOLDER]
    [--protocol app|nninteractive] ...``, run as the subcommand it names (with a note that --protocol is
    deprecated)."""

    def parse_args(self, ctx, args):
        if not args or args[0] not in (*self.commands, *ctx.help_option_names):
            args = older_form(list(args))
        return super().parse_args(ctx, args)


def older_form(args: list) -> list:
    """``[FOLDER] [--protocol P] ...`` -> ``[P, FOLDER, ...]`` (P defaults to app)."""
    protocol = "app"
    for i, arg in enumerate(args):
        if arg == "--protocol" and i + 1 < len(args):
            protocol = args[i + 1]
            del args[i:i + 2]
        elif arg.startswith("--protocol="):
            protocol = arg.split("=", 1)[1]
            del args[i]
        else:
            continue
        if protocol not in PORTS:
            raise UsageError(f"--protocol {shown(protocol)}: one of app, nninteractive")
        click.echo(f"NOTE: --protocol is deprecated: write `litemedsam serve {protocol} ...`", err=True)
        break
    return [protocol, *args]


@dataclasses.dataclass(frozen=True)
class Served:
    """What both servers take from the command line alike, checked once: where to listen, the model's threads,
    the router and the cases' intensity inputs, the reference's computation or not, embedding memory and disk
    (bytes)."""
    host: str
    port: int
    threads: int | None
    router: Router
    inputs: CaseInputs
    exact: bool
    cache_bytes: int
    disk_cache_bytes: int

    def store(self):
        """The disk store of embeddings (litemedsam.models.embedding_store), None for 0 bytes or where there is no
        private cache folder."""
        from litemedsam.models.embedding_store import EmbeddingStore

        return EmbeddingStore.default(self.disk_cache_bytes)


def model_flags(command):
    """The options of both subcommands, read into one ``Served`` passed as ``served``."""
    flags = [
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Address to listen on; 0.0.0.0 lets anyone on the network reach the server (in a "
                          "container)."),
        click.option("--port", type=click.IntRange(1, 65535), default=None,
                     help="Port to listen on (default 8765 for the app, 1527 for nninteractive, as nnInteractive's)."),
        click.option("--router", "router_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="A router file (default: the shipped one), as for infer."),
        click.option("--modality", default=None, help="Route every case as this modality, as for infer."),
        click.option("--window", default=None, metavar="LEVEL,WIDTH",
                     help="Intensity window for non-uint8 inputs, as for infer."),
        click.option("--exact", is_flag=True,
                     help="The reference's computation (no faster 3D options or mask strategies)."),
        click.option("--threads", type=int, default=None,
                     help="ONNX Runtime threads (default: all CPUs available)."),
        click.option("--cache-mb", type=click.IntRange(16, 1 << 20), default=1024, show_default=True,
                     help="Memory for image embeddings kept between boxes (LiteMedSAM: 4 MiB per slice)."),
        click.option("--disk-cache-mb", type=click.IntRange(0, 1 << 24), default=4096, show_default=True,
                     help="Disk for image embeddings kept between starts, in this user's private cache folder (a "
                          "restart, a reopened case or an image sent again reads them instead of encoding; a "
                          "512 x 512 x 300 CT: 1.2 GB); least recently used removed beyond it; 0: none."),
    ]
    names = ("host", "port", "router_file", "modality", "window", "exact", "threads", "cache_mb", "disk_cache_mb")

    def read(**kwargs):
        given = {name: kwargs.pop(name) for name in names}
        port = given["port"] or PORTS[click.get_current_context().info_name]
        return command(served=served(port=port, **{k: v for k, v in given.items() if k != "port"}), **kwargs)
    read.__name__, read.__doc__ = command.__name__, command.__doc__
    for flag in reversed(flags):
        read = flag(read)
    return read


def served(host, port, router_file, modality, window, exact, threads, cache_mb, disk_cache_mb) -> Served:
    """The shared options checked (UsageError): threads, the router and --modality, --window."""
    from litemedsam.cli.options import case_inputs, load_router
    from litemedsam.models import parallel
    from litemedsam.models.session import resolve_threads

    threads, warning = resolve_threads(threads)
    if warning:
        click.echo(f"WARNING: {warning}", err=True)
    parallel.forced(threads or 1)  # LITEMEDSAM_SLICE_SESSIONS checked now (UsageError), not at the first 3D box
    router = load_router(router_file, modality)
    inputs = case_inputs((), None, None, window, router.modality(modality) if modality else None)
    return Served(host, port, threads, router, inputs, exact, cache_mb << 20, disk_cache_mb << 20)


def prompting(served: Served):
    """The prompt methods both servers run (litemedsam.methods.prompting.BoxPrompting)."""
    from litemedsam.methods.prompting import BoxPrompting

    return BoxPrompting(served.router, None, served.inputs.modality, served.exact)


@click.group(cls=ServeCommands)
def serve():
    """Segment interactively: `serve app [FOLDER]` (in a browser) or `serve nninteractive` (3D Slicer, napari,
    scripts with nninteractive-client). `serve [FOLDER] [--protocol app|nninteractive]` still works (deprecated)."""


def check_listen(host: str, port: int) -> None:
    """UsageError when ``host:port`` cannot be listened on (a bad address, a port in use), said before starting."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as e:
        raise UsageError(f"cannot listen on {shown(host)}:{port} ({e.strerror or e}); choose another --port or "
                         f"--host") from None


def refuse_key_option(ctx, param, value):
    if value is not None:
        raise UsageError(f"--api-key: a key on the command line is seen by every user of this machine (ps); set "
                         f"${KEY_ENV} or give --api-key-file")
    return value


@serve.command("app")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("segs"),
              show_default=True, help="Where saved label maps go (the input's format and output name, as infer).")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also accept requests addressed to this host name (the name or address browsers use to reach "
                   "the server, e.g. a workstation's name); repeatable. Default: the listening address, "
                   "127.0.0.1, localhost and, with --host 0.0.0.0, this machine's name.")
@click.option("--max-upload-mb", type=click.IntRange(1, 1 << 20), default=2048, show_default=True,
              help="Largest file accepted by upload.")
@click.option("--labels", "label_table", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help='A project\'s label table, the names and colours objects take by label (JSON: {"labels": '
                   '{"1": {"name": "liver", "color": [r, g, b]}}}, as Save writes beside an output).')
@model_flags
def app(served: Served, folder, output_dir, allow_hosts, max_upload_mb, label_table):
    """Segment in a browser: open a case of FOLDER (or upload one), draw boxes, lines and clicks, correct, save.

    Open the printed address (http://127.0.0.1:8765/#token=...) in a browser on this machine: the token is a
    secret made at each start (or $LITEMEDSAM_SERVE_TOKEN), and every request without it is refused, so other
    users of the machine cannot open the cases. Everything the page needs is served from this package; nothing
    is fetched from the network.
    """
    try:
        import uvicorn

        from litemedsam.serve.web.app import Server, make_app
    except ImportError as e:
        raise UsageError(needs_extra("serve", "serve", e)) from None
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.run.folders import check_folders
    from litemedsam.serve.background import warm_models

    output_dir = output_dir.resolve()
    if folder is not None:
        check_folders(folder, output_dir)  # saves take the cases' names: never into the served folder
    for name in allow_hosts:
        if not HOST_NAME.fullmatch(name):
            raise UsageError(f"--allow-host {shown(name)}: a host name or address (no port, no scheme)")
    token = os.environ.get(TOKEN_ENV) or None
    if token is not None and not re.fullmatch(r"[A-Za-z0-9_\-]{16,128}", token):
        raise UsageError(f"${TOKEN_ENV} must be 16-128 letters, digits, '-' or '_'")
    table = project_labels(label_table)
    host, port = served.host, served.port
    check_listen(host, port)
    open_to_all = host in ("0.0.0.0", "::")
    hosts = list(dict.fromkeys([*(() if open_to_all else [host]), "127.0.0.1", "localhost", "[::1]",
                                *([socket.gethostname()] if open_to_all else []), *allow_hosts]))
    prompts, segmenters = prompting(served), Segmenters(served.threads)
    server = Server(folder.resolve() if folder else None, output_dir, prompts, segmenters, served.cache_bytes,
                    max_upload_mb << 20, served.inputs, hosts, token, table, served.store())
    warm_models(prompts, segmenters, ("2D", "3D"))
    shown_host = "127.0.0.1" if open_to_all else (f"[{host}]" if ":" in host else host)
    click.echo(f"litemedsam serve: http://{shown_host}:{port}/#token={server.token}"
               + ("" if token else f"  (a new token at each start: set ${TOKEN_ENV} to keep one)"))
    click.echo(f"  cases: {shown(folder) if folder else 'uploads only'}; saves to {shown(output_dir)}; "
               f"Ctrl-C stops")
    if open_to_all:
        click.echo(f"WARNING: listening on every interface: whoever has the address above (with its token) can open "
                   f"these cases; requests are accepted for the host names {', '.join(hosts)} "
                   f"(add one with --allow-host NAME)", err=True)
    run(uvicorn, make_app(server), host, port, server.close)


@serve.command("nninteractive")
@click.option("--max-upload-mb", "max_image_mb", type=click.IntRange(1, 1 << 20), default=2048, show_default=True,
              help="Largest image accepted, decompressed.")
@click.option("--memory", "memory_mb", type=click.IntRange(256, 1 << 24), default=None,
              help="The most memory (MB) the server may hold; an image that would need more is refused, saying so "
                   "(default: what this machine, or its cgroup, has available).")
@click.option("--max-sessions", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Clients served at once (each its own image and object).")
@click.option("--idle-timeout", type=click.FloatRange(1, 86400), default=600, show_default=True,
              help="Seconds without an interaction before a client's session is dropped.")
@click.option("--liveness-timeout", type=click.FloatRange(1, 86400), default=60, show_default=True,
              help="Seconds without any request (the client heartbeats) before it is dropped.")
@click.option("--answer-within", type=click.FloatRange(0.1, 3600), default=45, show_default=True,
              help="Seconds an interaction's answer waits for its work (the client gives up after 60 s by default, "
                   "3D Slicer too): past them it answers with what is done, the work goes on, and the rest comes "
                   "with the next answer.")
@click.option("--api-key-file", "key_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"A file holding the key clients send (default ${KEY_ENV}, else a new key printed at start).")
@click.option("--api-key", hidden=True, expose_value=False, callback=refuse_key_option)
@model_flags
def nninteractive(served: Served, max_image_mb, memory_mb, max_sessions, idle_timeout, liveness_timeout, answer_within,
                  key_file):
    """The nnInteractive server protocol: 3D Slicer's nnInteractive extension, napari's plugin or a script with
    nninteractive-client point at http://127.0.0.1:1527 with the key ($NN_INTERACTIVE_API_KEY, --api-key-file,
    else one made and printed). The key is always required, on localhost too.
    """
    try:
        import uvicorn

        from litemedsam.serve.nninteractive import Protocol, ProtocolOptions, make_app
    except ImportError as e:
        raise UsageError(needs_extra("serve nninteractive", "serve", e)) from None
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.serve.background import warm_models
    from litemedsam.serve.encoding import EmbeddingCache

    if liveness_timeout >= idle_timeout:
        raise UsageError("--liveness-timeout must be shorter than --idle-timeout")
    key, made = read_key(key_file)
    host, port = served.host, served.port
    check_listen(host, port)
    options = ProtocolOptions(key, max_sessions, idle_timeout, liveness_timeout, max_image_mb << 20,
                              served.inputs.modality, served.inputs.window,
                              None if memory_mb is None else memory_mb << 20, answer_within)
    cache_bytes = served.cache_bytes
    if memory_mb is not None and cache_bytes > (memory_mb << 20) // 4:
        cache_bytes = (memory_mb << 20) // 4
        click.echo(f"  embeddings kept in memory: at most {cache_bytes >> 20} MB (a quarter of --memory; "
                   f"--cache-mb asked {served.cache_bytes >> 20})"
                   + (", the others read back from disk" if served.disk_cache_bytes else ""))
    prompts, segmenters = prompting(served), Segmenters(served.threads)
    protocol = Protocol(options, prompts, segmenters, EmbeddingCache(cache_bytes, served.store()))
    warm_models(prompts, segmenters, ("3D",))
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"litemedsam serve nninteractive: http://{shown_host}:{port} (at most {max_sessions} client(s)); "
               f"Ctrl-C stops")
    if made:
        click.echo(f"  API key (made for this start; set ${KEY_ENV} or --api-key-file to keep one): {key}")
    if host in ("0.0.0.0", "::"):
        click.echo("WARNING: listening on every interface: whoever has the key can segment on this machine; the "
                   "traffic is not encrypted (put a TLS proxy in front, or use an SSH tunnel)", err=True)

    def stopping() -> None:
        running = protocol.stop_work()
        if running:
            click.echo(f"litemedsam serve: stopping; the interaction running for {running} client(s) is cancelled "
                       f"(their objects stay as they were)", err=True)
    run(uvicorn, make_app(protocol), host, port, protocol.close, stopping)


def project_labels(path: Path | None) -> dict:
    """The label table --labels gives ({} without one); UsageError naming the file and what is wrong."""
    if path is None:
        return {}
    from litemedsam.core.errors import CaseError
    from litemedsam.serve.interactive import read_label_table
    try:
        return read_label_table(path)
    except CaseError as e:
        raise UsageError(f"--labels {shown(path)}: {e}") from None


def read_key(key_file: Path | None) -> tuple[str, bool]:
    """(the nnInteractive protocol's key, whether it was made here): --api-key-file's, else $NN_INTERACTIVE_API_KEY,
    else a new random one."""
    if key_file is not None:
        from litemedsam.core.safeio import read_small

        where = f"--api-key-file {shown(key_file)}"
        try:
            key = read_small(key_file, 4096, where).decode("utf-8").strip()
        except ValueError as e:  # UnicodeDecodeError too
            raise UsageError(str(e) if str(e).startswith(where) else f"{where}: not UTF-8 text") from None
        if key_file.stat().st_mode & 0o077:
            click.echo(f"WARNING: {where} can be read by other users of this machine (chmod 600 it)", err=True)
    elif os.environ.get(KEY_ENV):
        key, where = os.environ[KEY_ENV].strip(), f"${KEY_ENV}"
    else:
        import secrets

        return secrets.token_urlsafe(32), True
    if not re.fullmatch(r"[\x21-\x7e]{16,256}", key):
        raise UsageError(f"{where}: the key must be 16-256 printable ASCII characters without spaces")
    return key, False


def run(uvicorn, app, host: str, port: int, close, stopping=None) -> None:
    """Serve ``app`` until Ctrl-C or SIGTERM, then ``close()``. SIGTERM (docker stop) is taken as Ctrl-C: uvicorn
    stops serving, then raises the signal again to this handler (not the default one, which would end the process
    at once), and ``close`` runs (the app's uploads, patients' files, are removed). ``stopping()`` is called as
    the signal comes, before uvicorn waits for the requests under way (so that they can be cancelled)."""
    terminate_on_sigterm()

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if stopping is not None and not self.should_exit:
                stopping()
            super().handle_exit(sig, frame)
    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM raised again once uvicorn stopped (as uvicorn.run takes it)
        pass
    finally:
        close()
    if not server.started:  # as uvicorn.run: it said why (the address taken, ...)
        sys.exit(3)

