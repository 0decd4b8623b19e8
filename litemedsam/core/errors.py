"""The errors litemedsam reports to users: one base class with an exit code, and names made safe to print.

A ``CaseError`` fails one case (the batch goes on, exit 1 at the end); the others stop the run before or
between cases with exit 2. The CLI prints every one of them as ``ERROR ...: message``, never a traceback.
"""
from __future__ import annotations

import unicodedata


class LitemedsamError(Exception):
    """A problem the user can act on; the message names the file or option and what is wrong."""

    exit_code = 2


class CaseError(LitemedsamError, ValueError):
    """A case that cannot be processed; the message names the problem (the caller adds the file)."""

    exit_code = 1


class OutputError(LitemedsamError, OSError):
    """An output file that could not be written (disk full, permissions); the message names it."""

    exit_code = 1


class ModelError(LitemedsamError, RuntimeError):
    """A model file is missing, unreadable or not the one the registry declares: nothing can run."""


class RouterError(LitemedsamError, ValueError):
    """A router file that cannot be used; the message names the file and the problem."""


class UsageError(LitemedsamError, ValueError):
    """An option or run-wide input (head, reference, threads, folders) that cannot be used: nothing runs."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (temporary files removed, finished outputs kept), exit 143."""

    exit_code = 143


def reason(e: Exception, path=None) -> str:
    """A library's error message for a message of ours: its last line, the file's path (named by the caller)
    left out, escaped (``shown``) and cut to 200 characters."""
    lines = str(e).strip().splitlines()
    text = lines[-1] if lines else type(e).__name__
    if path is not None:
        text = text.replace(str(path), "the file")
    return shown(text)[:200]


def shown(name) -> str:
    """A file name (or any text from outside) safe to print on one line: control characters, line breaks
    and bytes that are not UTF-8 are written as escapes (\\n, \\x1b, \\udcff), everything else as it is."""
    out = []
    for c in str(name):
        if c.isprintable() or c == " ":
            out.append(c)
        elif c in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c])
        elif ord(c) < 0x100 and unicodedata.category(c) == "Cc":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
    return "".join(out)


MAX_MESSAGE = 2000  # characters of a case's message printed and recorded (a file's text can be megabytes)


def brief(text) -> str:
    """A message about a case as printed and kept in run.json: one line (``shown``), at most MAX_MESSAGE
    characters."""
    text = shown(text)
    return text if len(text) <= MAX_MESSAGE else f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE} more characters)"


def terminate_on_sigterm() -> None:
    """SIGTERM (docker stop, a scheduler's time limit) raises Terminated in the main thread, as Ctrl-C raises
    KeyboardInterrupt: what runs stops as it stops for Ctrl-C (no partial file left), exit 143. The one handler
    of infer, its worker processes and both servers."""
    import signal

    def terminate(signum, frame):
        raise Terminated()
    signal.signal(signal.SIGTERM, terminate)


EXTRAS = {"serve": "Starlette, uvicorn and blosc2", "cluster": "Dask distributed", "io": "SimpleITK",
          "export": "torch and onnx"}  # pip extras of litemedsam (pyproject.toml) and what they install


def needs_extra(feature: str, extra: str, error: Exception | None = None) -> str:
    """What a feature whose extra is not installed says: what it needs and the command that installs it."""
    why = f" ({error})" if error is not None else ""
    them = "them" if " and " in EXTRAS[extra] else "it"
    return f"{feature} needs {EXTRAS[extra]}{why}; install {them} with: pip install 'litemedsam[{extra}]'"
