"""What the endpoints of both servers (the browser app, litemedsam.serve.web, and the nnInteractive protocol,
litemedsam.serve.nninteractive) check and answer the same way: a refusal with its HTTP status, a failure's status
and words, a request body read to a limit, JSON that is an object of finite numbers, numbers and integers that are
JSON's own (not booleans)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only, never evaluated here: the protocol's rooms need no Starlette, and
    from typing import TypeGuard  # typing.TypeGuard is Python 3.10's (3.9 runs too)

    from starlette.requests import Request

from litemedsam.core.errors import LitemedsamError, ModelError, shown


class Refused(Exception):
    """A request that cannot be answered: its HTTP status and what is wrong (each server words the reply)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def refusal(e: Exception) -> tuple[int, str]:
    """The HTTP status and the words of a request's failure, the same in both servers (each puts them in its own
    JSON key): a refusal its own; a model that cannot run 503; a case or request the core refused 422; out of
    memory 507; a file 500 naming it; anything else (a bug of ours) 500 in one line, never a traceback."""
    if isinstance(e, Refused):
        return e.status, str(e)
    if isinstance(e, ModelError):
        return 503, f"the model cannot run: {e}"
    if isinstance(e, LitemedsamError):
        return 422, str(e)
    if isinstance(e, MemoryError):
        return 507, "out of memory"
    if isinstance(e, OSError):
        return 500, f"{shown(e.filename or '')}: {e.strerror or e}"
    return 500, f"internal error {type(e).__name__}: {shown(e)}"


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes in memory whatever the client says (413 beyond, said before
    reading when its Content-Length is already too large)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(413, f"the body is larger than the {limit} bytes accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the body is larger than the {limit} bytes accepted")
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(data: bytes | str, what: str = "the request body") -> dict:
    """``data`` as a JSON object (empty: {}); Refused 400 for anything else, NaN and Infinity included."""
    try:
        found = json.loads(data or "{}", parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: arrays nested past any parser's depth
        raise Refused(400, f"{what} is not JSON (or nested too deeply)") from None
    if not isinstance(found, dict):
        raise Refused(400, f"{what} must be a JSON object")
    return found


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def number(value, limit: float = 1e9) -> bool:
    """A JSON number (not a boolean) of magnitude below ``limit`` (NaN and infinities are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < limit


def integer(value) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
