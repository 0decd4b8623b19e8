"""Running a folder of cases: one model load, one case at a time, a bad case never stops the others."""
from __future__ import annotations

import csv
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from litemedsam.cases import CaseError, load_case, save_segmentation
from litemedsam.pipeline import segment_case
from litemedsam.registry import ModelError, get_model
from litemedsam.router import Router, RouterError
from litemedsam.segmenter import Segmenter, make_segmenter

EFFICIENCY_CSV = "efficiency.csv"


@dataclass
class Result:
    case: str
    seconds: float
    status: str  # "ok", "failed" or "existing" (kept from an earlier run)
    message: str = ""
    model: str = ""


def list_cases(input_path: Path) -> list[Path]:
    """The .npz cases of a folder (sorted), or the single file given."""
    if input_path.is_file():
        return [input_path]
    return sorted(p for p in input_path.iterdir() if p.suffix == ".npz" and p.is_file() and not p.name.startswith("."))


def _read_times(path: Path) -> dict:
    try:
        with open(path, newline="") as handle:
            return {row["case"]: row for row in csv.DictReader(handle)}
    except (OSError, KeyError, csv.Error):
        return {}


def _write_times(path: Path, rows: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "time", "status"])
        for case in sorted(rows):
            writer.writerow([case, rows[case]["time"], rows[case]["status"]])
    os.replace(tmp, path)


class Segmenters:
    """The segmenters of one run, made when a case first needs them (one session pair per model)."""

    def __init__(self, threads: int | None = None, factory: Callable[[str], Segmenter] | None = None):
        self.factory = factory or (lambda name: make_segmenter(name, threads=threads))
        self.loaded: dict = {}

    def get(self, name: str) -> Segmenter:
        if name not in self.loaded:
            self.loaded[name] = self.factory(name)
        return self.loaded[name]


def infer(input_path: Path, output_dir: Path, router: Router | None = None, segmenters: Segmenters | None = None,
          model: str | None = None, modality: str | None = None, continue_prediction: bool = False,
          echo: Callable[[str], None] = print, debug: bool = False, mode=None) -> list[Result]:
    """Segment every case of ``input_path`` into ``output_dir`` (same file names).

    The router picks model and strategy per case (``model``/``modality`` override it). Each output
    is written atomically when its case is done, and ``efficiency.csv`` (seconds per case) is
    rewritten after every case, so an interrupted run keeps everything finished so far;
    ``continue_prediction`` skips cases whose output already exists. A model file that is present
    but altered raises ModelError (nothing can be trusted); a bad case only fails that case.
    ``mode`` (selfprompt.SelfPrompt, oneshot.OneShot or promptless.Promptless) replaces box prompting:
    boxes are ignored (and may be absent), ``mode.model`` segments what the mode finds in the cases
    of ``mode.dims`` (3D volumes slice by slice).
    """
    router = router or Router.load()
    segmenters = segmenters or Segmenters()
    cases = list_cases(input_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise PermissionError(13, f"output folder is not writable by this user (uid {os.getuid()})", str(output_dir))
    times_path = output_dir / EFFICIENCY_CSV
    times = _read_times(times_path) if continue_prediction else {}
    results: list[Result] = []
    warned: set = set()
    width = len(str(len(cases)))
    for n, path in enumerate(cases, 1):
        target = output_dir / path.name
        prefix = f"[{n:>{width}}/{len(cases)}] {path.name}"
        if continue_prediction and target.exists():
            results.append(Result(path.name, 0.0, "existing"))
            echo(f"{prefix}: output exists, skipped (--continue-prediction)")
            continue
        start = time.perf_counter()
        chosen = ""
        try:
            case = load_case(path, require_boxes=mode is None)
            for warning in case.warnings if mode is None else ():  # (they are about boxes)
                echo(f"WARNING {path.name}: {warning}")
            if mode is not None:
                if case.dim not in mode.dims:
                    raise CaseError(f"{mode.name} segments {' and '.join(mode.dims)} cases, not {case.dim}")
                chosen = mode.model
                seg = segmenters.get(chosen)
                if case.dim == "3D":  # slice by slice
                    segs = np.stack([mode.segment(seg, image) for image in case.image])
                else:
                    segs = mode.segment(seg, case.image)
            else:
                decision = router.decide(path.name, dim=case.dim, modality=modality, model=model)
                for name, missing in decision.skipped:
                    if name not in warned:
                        warned.add(name)
                        echo(f"WARNING: model {name} is not built (missing {missing}); its cases fall back "
                             f"along the router's chain. Build it with: {get_model(name).build}")
                if decision.model is None:
                    raise ModelError(f"no model of rule {decision.rule!r} is built: "
                                     + "; ".join(f"{m}: missing {x}" for m, x in decision.skipped))
                chosen = decision.model
                segmenter = segmenters.get(chosen)
                segmenter.prompt = decision.prompt
                segs = segment_case(segmenter, case, decision.strategy, decision.margin)
            save_segmentation(target, segs)
            status, message = "ok", ""
        except ModelError:
            raise
        except (CaseError, RouterError) as e:
            status, message = "failed", str(e)
        except MemoryError:
            status, message = "failed", "out of memory while segmenting this case"
        except OSError as e:  # reading is checked by load_case: this is the output side
            status, message = "failed", f"cannot write {target}: {e.strerror or e}"
        except Exception as e:  # a bug of ours: report it, keep going with the other cases
            status, message = "failed", f"internal error {type(e).__name__}: {e}"
            if debug:
                message += "\n" + traceback.format_exc()
        seconds = time.perf_counter() - start
        results.append(Result(path.name, seconds, status, message, chosen))
        times[path.name] = {"time": f"{seconds:.4f}", "status": status}
        _write_times(times_path, times)
        if status == "ok":
            echo(f"{prefix}: {seconds:.2f} s ({chosen})")
        else:
            echo(f"ERROR {path.name}: {message}")
    return results
