"""OUTPUT/run.json: what ran. The command and its options, the versions of litemedsam, ONNX Runtime and NumPy,
the threads, each model used (its files and their sha256), and per case: status, seconds, model, the router's
decision (rule, strategy, mask strategies), warnings and the error. Rewritten atomically after every case, as
efficiency.csv is, so an interrupted run keeps the record of what it finished; a resumed run
(``--continue-prediction``) keeps the earlier record of each case it does not run again (status "existing"), and
any run keeps the records of the cases earlier runs into the same folder wrote and it did not run."""
from __future__ import annotations

import json
import platform
import stat
import sys
import time
from pathlib import Path

from litemedsam import __version__
from litemedsam.core.safeio import write_text

RUN_JSON = "run.json"
MAX_RUN_JSON = 64 << 20


def _slice_encoding(threads: int | None) -> str:
    """How a volume's slices are encoded in this run (litemedsam.models.parallel), for the record."""
    from litemedsam.models import parallel
    from litemedsam.models.session import default_threads

    return parallel.choose(threads or default_threads()).describe()


class RunRecord:
    def __init__(self, output_dir: Path, options: dict, threads: int | None, resume: bool = False):
        import numpy
        import onnxruntime

        self.path = output_dir / RUN_JSON
        self.data = {
            "litemedsam": __version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": sys.argv,
            "options": options,
            "threads": threads,
            "slice_encoding": _slice_encoding(threads),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__,
            "models": {},
            "cases": [],
        }
        self.before, self.earlier_models = self._earlier()  # every case an earlier run into this folder recorded
        self.earlier = {c["case"]: c for c in self.before if c.get("status") in ("ok", "existing")} if resume else {}

    def _earlier(self) -> tuple:
        """The cases and models of the run.json an earlier run into this folder left, when there is a readable one."""
        try:
            info = self.path.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RUN_JSON:
                return [], {}
            data = json.loads(self.path.read_text(encoding="utf-8"))
            cases = [c for c in data["cases"] if isinstance(c, dict) and isinstance(c.get("case"), str)]
            return cases, dict(data.get("models") or {})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return [], {}

    def add(self, result) -> None:
        """Record one case (a litemedsam.run.runner.Result); its model's files and checksums the first time it
        appears."""
        if result.status == "existing" and result.case in self.earlier:  # as the earlier run recorded it
            entry = {**self.earlier[result.case], "status": "existing"}
            model = entry.get("model")
            if model in self.earlier_models:
                self.data["models"].setdefault(model, self.earlier_models[model])
            self.data["cases"].append(entry)
            return
        model = result.model or None
        if model and model not in self.data["models"]:
            from litemedsam.models.registry import get_model, model_files

            self.data["models"][model] = {Path(p).name: sha for p, sha in model_files(get_model(model))}
        self.data["cases"].append({"case": result.case, "output": result.output, "status": result.status,
                                   "seconds": round(result.seconds, 4), "model": model, "decision": result.decision,
                                   "warnings": result.warnings, "message": result.message or None,
                                   "confidence": result.confidence})

    def write(self) -> None:
        """run.json: this run's cases, then those that earlier runs into the same folder recorded and this one did
        not run (their outputs are in the folder too), with their models."""
        self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        ran = {c["case"] for c in self.data["cases"]}
        kept = [c for c in self.before if c["case"] not in ran]
        models = dict(self.data["models"])
        for case in kept:
            if case.get("model") in self.earlier_models:
                models.setdefault(case["model"], self.earlier_models[case["model"]])
        data = {**self.data, "models": models, "cases": self.data["cases"] + kept}
        # file names that are not UTF-8 are kept as their escaped surrogates (ensure_ascii)
        write_text(self.path, json.dumps(data, indent=1, default=str) + "\n")
