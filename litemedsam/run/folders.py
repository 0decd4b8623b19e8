"""What an input folder holds and where outputs may go: the cases of a folder (and the entries that are not
cases), and the check that outputs can never replace inputs."""
from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

from litemedsam.core.errors import UsageError, shown
from litemedsam.core.safeio import same_file
from litemedsam.io.formats.registry import is_case_folder, suffix


def list_cases(input_path: Path) -> tuple[list, list]:
    """The cases of a folder, sorted: its entries named as case files (litemedsam.io.formats: *.npz, *.nii.gz,
    *.png, ... in any letter case) that are files, or symbolic links, and its folders (or links to folders) of
    one DICOM series (a broken link or a link loop is a case that fails with a message, so it is not lost
    silently); and notices for the entries skipped: those so named that are hidden (a leading '.'), folders,
    FIFOs and devices, and folders that are not DICOM series. A file given as the input is the only case."""
    if not input_path.is_dir():
        return [input_path], []
    cases: list = []
    skipped: dict = {}
    for entry in sorted(os.scandir(input_path), key=lambda e: e.name):
        ext = suffix(entry.name)
        if ext is None:
            if not entry.name.startswith(".") and entry.is_dir():  # a folder, or a link to one
                if is_case_folder(Path(os.path.realpath(entry.path))):
                    cases.append(Path(entry.path))  # a DICOM series
                else:
                    skipped.setdefault(("folder that is not a DICOM series (no file with the DICM marker among its "
                                        "first files)", "folders that are not DICOM series (no file with the DICM "
                                        "marker among their first files)", ""), []).append(entry.name)
            continue
        if entry.name.startswith("."):
            skipped.setdefault(("hidden file", "hidden files", ext), []).append(entry.name)
            continue
        try:
            mode = os.stat(entry.path).st_mode
        except OSError:  # broken link or loop: reported as a failed case
            cases.append(Path(entry.path))
            continue
        if stat.S_ISREG(mode):
            cases.append(Path(entry.path))
        else:
            kind = (("folder", "folders") if stat.S_ISDIR(mode) else ("FIFO", "FIFOs") if stat.S_ISFIFO(mode)
                    else ("special file", "special files"))
            skipped.setdefault((*kind, ext), []).append(entry.name)
    notices = [f"skipped {len(names)} {kind[len(names) > 1]}{f' named *{kind[2]}' if kind[2] else ''}: "
               + ", ".join(shown(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
               + (" (names starting with '.' are not cases)" if kind[0] == "hidden file" else "")
               for kind, names in skipped.items()]
    return cases, notices


@contextmanager
def hold(output_dir: Path):
    """Hold ``output_dir`` for one run (an exclusive lock on the folder itself, released when the run, or its
    process, ends): UsageError when another run holds it, as two runs' efficiency.csv and run.json would each
    keep only their own rows."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    fd = os.open(output_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"the output folder {shown(output_dir)} is in use by another litemedsam run: wait for "
                             f"it to end, or choose another output folder") from None
        yield
    finally:
        os.close(fd)


def check_folders(input_path: Path, output_dir: Path, what: str = "input", kept: str = "the inputs",
                  out: str = "output") -> None:
    """UsageError when outputs could replace files of the user's: the output folder is the ``what`` folder
    (the input folder, the --boxes-from-labels folder), or the folder of such a file (through any symbolic link
    or hard link); each case is checked again when written."""
    where = input_path if input_path.is_dir() else input_path.parent
    if same_file(where, output_dir):
        which = f"the {what} folder" if input_path.is_dir() else f"the folder of the {what} file {shown(input_path)}"
        raise UsageError(f"the {out} folder {shown(output_dir)} is {which}: outputs take the cases' file names "
                         f"and would replace {kept}; choose another {out} folder")
