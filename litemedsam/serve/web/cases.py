"""The browser app's endpoints for cases: the page and its assets, the served folder's listing, opening a case
by its name there (never by a path from the request) and uploading one (size-limited, kept in a private temporary
folder; a .zip of one DICOM series is unpacked without trusting its member names)."""
from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse

from litemedsam.core.errors import CaseError, LitemedsamError, shown
from litemedsam.io.formats.registry import output_name, output_owners, suffix
from litemedsam.serve.http import Refused
from litemedsam.serve.web.server import describe, json_body

STATIC = Path(__file__).parent / "static"
ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
UPLOAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-+() ]{0,200}")  # spaces as in "scan (2).nii.gz"; no separator


async def page(request: Request):
    name = request.path_params.get("asset", "index.html")
    if name not in ASSETS:
        return JSONResponse({"error": "not found"}, 404)
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


async def cases(request: Request):
    server = request.app.state.server
    found = await run_in_threadpool(server.cases)
    return {"folder": str(server.folder) if server.folder else None, "output": str(server.output_dir),
            "cases": [{"name": n, "segmented": (server.output_dir / output_name(p)).is_file()}
                      for n, p in found.items()]}


async def open_named(request: Request):
    server = request.app.state.server
    body = await json_body(request)
    name = body.get("name")
    found = await run_in_threadpool(server.cases)
    if not isinstance(name, str) or name not in found:
        raise Refused(404, f"{shown(str(name))!r} is not a case of the served folder")
    owner = output_owners(found.values())[output_name(found[name])]
    if owner != name:  # as infer: the first case of the folder owns an output name
        raise Refused(409, f"{shown(name)}: its output {shown(output_name(found[name]))} is also the output of "
                            f"{shown(owner)} (2D images are saved as .png); rename one of them")
    return await opened(server, found[name], name)


async def opened(server, path: Path, name: str, upload: Path | None = None):
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
    server = request.app.state.server
    name = request.query_params.get("name", "")
    series = name.lower().endswith(".zip") and len(name) > 4
    if not UPLOAD_NAME.fullmatch(name) or (suffix(name) is None and not series) or ".." in name:
        raise Refused(400, f"{shown(name)!r}: upload a case file (.npz, .nii.gz, .nrrd, .mha, .png, .jpg, "
                            f".tif, .bmp, or a .zip of one DICOM series) named with letters, digits, spaces and "
                            f"'.', '_', '-', '+', '(' or ')'")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > server.max_upload):
        raise Refused(413, f"{shown(name)}: larger than the upload limit ({server.max_upload >> 20} MiB)")
    folder = Path(tempfile.mkdtemp(dir=server.uploads))
    try:  # nothing of an upload that does not open is kept: too large, cut off by the client, not a case
        path = folder / name
        size = 0
        with open(path, "xb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > server.max_upload:
                    raise Refused(413, f"{shown(name)}: larger than the upload limit "
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
    return await opened(server, path, name[:-4] if series else name, folder)


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


