"""OUTPUT/run.json: what ran. The command and its options, the versions of litemedsam, ONNX Runtime and NumPy,
the threads, each model used (its files and their sha256), and per case: status, seconds, model, the router's
decision (rule, strategy, mask strategies), warnings and the error. Rewritten atomically after every case, as
efficiency.csv is, so an interrupted run keeps the record of what it finished."""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from litemedsam import __version__
from litemedsam.safeio import write_text

RUN_JSON = "run.json"


class RunRecord:
    def __init__(self, output_dir: Path, options: dict, threads: int | None):
        import numpy
        import onnxruntime

        self.path = output_dir / RUN_JSON
        self.data = {
            "litemedsam": __version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": sys.argv,
            "options": options,
            "threads": threads,
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__,
            "models": {},
            "cases": [],
        }

    def add(self, result) -> None:
        """Record one case (a litemedsam.runner.Result); its model's files and checksums the first time it appears."""
        model = result.model or None
        if model and model not in self.data["models"]:
            from litemedsam.registry import get_model, model_files

            self.data["models"][model] = {Path(p).name: sha for p, sha in model_files(get_model(model))}
        self.data["cases"].append({"case": result.case, "output": result.output, "status": result.status,
                                   "seconds": round(result.seconds, 4), "model": model, "decision": result.decision,
                                   "warnings": result.warnings, "message": result.message or None})

    def write(self) -> None:
        self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        # file names that are not UTF-8 are kept as their escaped surrogates (ensure_ascii)
        write_text(self.path, json.dumps(self.data, indent=1, default=str) + "\n")
