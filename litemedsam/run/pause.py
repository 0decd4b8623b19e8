"""A test hook in place of sleeps (fault injection): with ``LITEMEDSAM_PAUSE_IN=NAME:FLAG`` the process that is
about to segment the case file NAME writes its pid to FLAG and waits there until FLAG is removed, so that a test
acts on a process it knows to be mid-case (kills a worker, sends SIGTERM) instead of sleeping and hoping."""
from __future__ import annotations

import os
import time
from pathlib import Path


def pause_if_asked(case_name: str) -> None:
    name, _, flag = os.environ.get("LITEMEDSAM_PAUSE_IN", "").partition(":")
    if not name or not flag or case_name != name:
        return
    Path(flag).write_text(str(os.getpid()))
    while Path(flag).exists():
        time.sleep(0.01)
