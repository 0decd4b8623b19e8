"""The one checkpoint reader of the export tools."""
from __future__ import annotations

from pathlib import Path

import torch


def read_state(checkpoint) -> dict:
    """The state dict of a checkpoint file (or of a dict already loaded): ``torch.load`` with
    ``weights_only=True`` (no code from the file runs); a training checkpoint's ``{"model": ...}`` or
    ``{"state_dict": ...}`` unwrapped; DataParallel's ``module.`` key prefixes dropped."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True) if isinstance(checkpoint, (str, Path)) \
        else checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint}: not a state dict (a {type(state).__name__})")
    for wrapper in ("model", "state_dict"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    return {k.removeprefix("module."): v for k, v in state.items()}
