import os
import re
import signal
import socket
from pathlib import Path

import click

from litemedsam.core.errors import Terminated, UsageError, shown


TOKEN_ENV = "LITEMEDSAM_SERVE_TOKEN"  # a token of your own (scripts, containers); else a random one per start
HOST_NAME = re.compile(r"[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


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


@click.command()
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("segs"),
              show_default=True, help="Where saved label maps go (the input's format and output name, as infer).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 lets anyone on the network open FOLDER's cases (in a container).")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also accept requests addressed to this host name (the name or address browsers use to reach "
                   "the server, e.g. a workstation's name); repeatable. Default: the listening address, "
                   "127.0.0.1, localhost and, with --host 0.0.0.0, this machine's name.")
@click.option("--router", "router_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A router file (default: the shipped one), as for infer.")
@click.option("--modality", default=None, help="Route every case as this modality, as for infer.")
@click.option("--window", default=None, metavar="LEVEL,WIDTH", help="Intensity window for non-uint8 inputs, as for infer.")
@click.option("--exact", is_flag=True, help="The reference's computation (no faster 3D options or mask strategies).")
@click.option("--threads", type=int, default=None, help="ONNX Runtime threads (default: all CPUs available).")
@click.option("--cache-mb", type=click.IntRange(16, 1 << 20), default=1024, show_default=True,
              help="Memory for image embeddings kept between boxes (LiteMedSAM: 4 MiB per slice).")
@click.option("--max-upload-mb", type=click.IntRange(1, 1 << 20), default=2048, show_default=True,
              help="Largest file accepted by upload.")
def serve(folder, output_dir, host, port, allow_hosts, router_file, modality, window, exact, threads, cache_mb,
          max_upload_mb):
    """Segment interactively in a browser: open a case of FOLDER (or upload one), draw boxes, save.

    Open the printed address (http://127.0.0.1:8765/#token=...) in a browser on this machine: the token is a
    secret made at each start (or $LITEMEDSAM_SERVE_TOKEN), and every request without it is refused, so other
    users of the machine cannot open the cases. Everything the page needs is served from this package; nothing
    is fetched from the network.
    """
    try:
        import uvicorn

        from litemedsam.serve.web.app import Server, make_app
    except ImportError as e:
        raise UsageError(f"serve needs Starlette and uvicorn ({e}); install them with: pip install "
                         f"'litemedsam[serve]'") from None
    from litemedsam.cli.options import case_inputs, load_router
    from litemedsam.run.folders import check_folders
    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.models.session import resolve_threads

    threads, warning = resolve_threads(threads)
    if warning:
        click.echo(f"WARNING: {warning}", err=True)
    router = load_router(router_file, modality)
    output_dir = output_dir.resolve()
    if folder is not None:
        check_folders(folder, output_dir)  # saves take the cases' names: never into the served folder
    for name in allow_hosts:
        if not HOST_NAME.fullmatch(name):
            raise UsageError(f"--allow-host {shown(name)}: a host name or address (no port, no scheme)")
    token = os.environ.get(TOKEN_ENV) or None
    if token is not None and not re.fullmatch(r"[A-Za-z0-9_\-]{16,128}", token):
        raise UsageError(f"${TOKEN_ENV} must be 16-128 letters, digits, '-' or '_'")
    check_listen(host, port)
    open_to_all = host in ("0.0.0.0", "::")
    hosts = list(dict.fromkeys([*(() if open_to_all else [host]), "127.0.0.1", "localhost", "[::1]",
                                *([socket.gethostname()] if open_to_all else []), *allow_hosts]))
    server = Server(folder.resolve() if folder else None, output_dir, BoxPrompting(router, None, modality, exact),
                    Segmenters(threads), cache_mb << 20, max_upload_mb << 20,
                    case_inputs((), None, None, window, router.modality(modality) if modality else None), hosts,
                    token)
    shown_host = "127.0.0.1" if open_to_all else (f"[{host}]" if ":" in host else host)
    click.echo(f"litemedsam serve: http://{shown_host}:{port}/#token={server.token}")
    click.echo(f"  cases: {shown(folder) if folder else 'uploads only'}; saves to {shown(output_dir)}; "
               f"Ctrl-C stops")
    if open_to_all:
        click.echo(f"WARNING: listening on every interface: whoever has the address above (with its token) can open "
                   f"these cases; requests are accepted for the host names {', '.join(hosts)} "
                   f"(add one with --allow-host NAME)", err=True)

    def terminate(signum, frame):
        raise Terminated()
    # SIGTERM (docker stop) as Ctrl-C: uvicorn stops serving, then raises the signal again to this handler (not
    # the default one, which would end the process at once), and the uploads (patients' files) are removed
    signal.signal(signal.SIGTERM, terminate)
    try:
        uvicorn.run(make_app(server), host=host, port=port, log_level="warning")
    finally:
        server.close()
