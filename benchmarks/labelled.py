"""What bench_selfprompt.py and bench_oneshot.py share: labelled 2D dev cases of one kind, binary Dice,
and the box-prompted result on them for reference."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from litemedsam.core.masks import dice
from litemedsam.io.cases import Case
from litemedsam.io.formats.challenge import load_case
from litemedsam.methods.pipeline import segment_2d
from litemedsam.models.registry import dev_data_dir

DEV = dev_data_dir()


def labelled_cases(cases_dir: Path, match: str) -> dict[str, tuple[Case, np.ndarray]]:
    """name -> (case, foreground mask) for the 2D cases whose name contains ``match``, sorted by name."""
    files = sorted(p for p in (cases_dir / "imgs").glob("2DBox_*.npz") if match in p.name)
    return {p.name: (load_case(p), np.load(cases_dir / "gts" / p.name)["gts"] > 0) for p in files}


def box_prompted(seg, cases: dict, names) -> dict[str, float]:
    """DSC of the usual box-prompted segmentation (the cases' own boxes) of ``names``."""
    return {n: dice(segment_2d(seg, cases[n][0].image, cases[n][0].boxes), cases[n][1]) for n in names}
