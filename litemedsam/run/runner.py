"""Running cases: the predictor (one function per case, and a folder run in this process); a bad case never
stops the others."""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable


from litemedsam.core import confidence, progress
from litemedsam.io import formats
from litemedsam.io.given_boxes import CaseInputs
from litemedsam.core.errors import CaseError, LitemedsamError, ModelError, UsageError, brief, shown
from litemedsam.run.folders import check_folders, hold, list_cases
from litemedsam.run.pause import pause_if_asked
from litemedsam.methods.prompting import ModelChoice, Plan, Prompting
from litemedsam.models.registry import get_model
from litemedsam.run.run_record import RunRecord
from litemedsam.core.measure import measurements_file, to_csv
from litemedsam.core.safeio import remove_stale_temps, write_text
from litemedsam.models.segmenter import Segmenters
from litemedsam.core.timing import EFFICIENCY_CSV, phase, process_seconds, read_times, timing, write_times


@dataclass
class CaseJob:
    """One case to run: its file, its output, the input that owns that output name, its progress prefix."""

    path: Path
    target: Path
    owner: str
    prefix: str


@dataclass
class Result:
    case: str
    seconds: float
    status: str  # "ok", "failed" or "existing" (kept from an earlier run)
    message: str = ""
    model: str = ""
    phases: dict | None = None  # seconds per phase (litemedsam.core.timing.phase)
    output: str = ""  # the output file's name
    decision: dict | None = None  # what the router decided (decision_record), when it got that far
    warnings: list = field(default_factory=list)  # the case's warnings (boxes clipped or skipped, no overlay)
    # label -> the decoder's mean predicted IoU of its masks (litemedsam.core.confidence)
    confidence: dict | None = None


def profile_line(phases: dict, seconds: float) -> str:
    """``read 0.008 s, load 0.110 s, encode 0.392 s, ..., other 0.050 s`` (other: the case's seconds not in a phase)."""
    order = ["read", "load", "encode", "decode", "write"]
    names = [n for n in order if n in phases] + sorted(set(phases) - set(order))
    parts = [f"{n} {phases[n]:.3f} s" for n in names]
    return ", ".join(parts + [f"other {max(0.0, seconds - sum(phases.values())):.3f} s"])


def decision_record(plan: Plan | None) -> dict | None:
    """What the router decided for a case (and which model it chose), for run.json."""
    if plan is None or plan.decision is None:
        return None
    d, how, choice = plan.decision, plan.decision.propagation, plan.choice or ModelChoice(plan.model)
    return {"rule": d.rule, "modality": d.modality, "dim": d.dim, "strategy": how.strategy, "margin": how.margin,
            "stride": how.stride, "stop": how.stop, "prompt": how.prompt, "masks": how.policy.describe(),
            "skipped_models": [m for m, _ in choice.skipped], "encoder": choice.encoder}


class Once(str):
    """A message line about the run rather than one case (a notice, a model that is not built): printed once."""


@dataclass
class RunSpec:
    """What a run does to each case, the same for all and picklable: shipped as it is to worker processes and,
    with ``shippable``, to cluster workers. ``prompting`` (litemedsam.methods.prompting) picks each case's model and
    prompts it; ``inputs`` (litemedsam.io.given_boxes.CaseInputs) are the command line's boxes and intensity options."""

    prompting: Prompting
    inputs: CaseInputs | None = None
    overlay_dir: Path | None = None  # where overlay PNGs go (litemedsam.io.overlay), None: none
    debug: bool = False  # a bug's traceback in its case's message
    measurements: bool = False  # each output's objects measured beside it (litemedsam.core.measure)

    def shippable(self) -> "RunSpec":
        """This spec for another machine: its folders as absolute paths."""
        spec = replace(self, overlay_dir=Path(os.path.abspath(self.overlay_dir)) if self.overlay_dir else None)
        if spec.inputs is not None and spec.inputs.labels is not None:  # --boxes-from-labels, read by the workers
            spec.inputs = replace(spec.inputs, labels=Path(os.path.abspath(spec.inputs.labels)))
        return spec


def unusable_output(path: Path, target: Path) -> str:
    """Why the existing output ``target`` of the case at ``path`` cannot be kept by --continue-prediction, "" when
    it can: it must read as a label map of the case's shape (not a file cut short, empty, or another case's)."""
    try:
        labels = formats.read_labels(target)[0]
        shape = formats.label_shape(path)
    except Exception as e:  # whatever stops reading it: the case is done again
        return f"cannot be read ({brief(shown(e)) or type(e).__name__})"
    if labels.shape[:len(shape)] != shape:
        return f"has shape {labels.shape}, the case {shape}"
    return ""


class FolderRun:
    """The books of a run (nnU-Net v2's predictor): ``predict_folder`` lists a folder's cases, hands them to its
    executor (``run_jobs``, here; or worker processes, or a cluster) and, as each one finishes, prints its lines
    and keeps efficiency.csv and run.json. Every executor runs each case with ``run_case(spec, job, ...)``.
    Messages go through ``echo`` (lines starting with ERROR or WARNING are problems)."""

    def __init__(self, spec: RunSpec, threads: int | None = None, segmenters: Segmenters | None = None,
                 echo: Callable[[str], None] = print, profile: bool = False, options: dict | None = None,
                 quiet: bool = False, bar: Callable[[str, int, int], None] | None = None, executor=None):
        self.spec = spec
        self.threads = threads
        self.options = options  # the run's options, for run.json (None: no run record)
        self.quiet = quiet  # no line per finished case (problems and the summary still print)
        self.bar = bar  # (case name, done, total) -> shows progress within a case (a terminal's bar), or None
        self.executor = executor  # (spec, jobs, echo) -> (job, Result, lines) as they finish; None: run_jobs (here)
        self.segmenters = segmenters or Segmenters(threads)
        self.echo = echo
        self.profile = profile
        self.warned: set = set()

    def predict_folder(self, input_path: Path, output_dir: Path, continue_prediction: bool = False) -> list[Result]:
        """Segment every case of ``input_path`` into ``output_dir`` (same file names).

        Each output is written atomically when its case is done, and ``efficiency.csv`` (seconds per case)
        is rewritten after every case, so an interrupted run keeps everything finished so far;
        ``continue_prediction`` skips cases whose output already exists. A model that cannot be used raises
        ModelError (nothing can be trusted); a bad case only fails that case.
        """
        cases = self._prepare(input_path, output_dir)
        with hold(output_dir):  # one run at a time writes into a folder (its books are merged, never lost)
            return self._predict(cases, output_dir, continue_prediction)

    def _predict(self, cases: list, output_dir: Path, continue_prediction: bool) -> list[Result]:
        times_path = output_dir / EFFICIENCY_CSV
        record = RunRecord(output_dir, self.options, self.threads, continue_prediction) if self.options is not None \
            else None
        times = read_times(times_path, self.echo)  # earlier runs' rows stay; this run's cases replace theirs
        if self.profile and process_seconds() is not None:
            self.echo(f"profile: {process_seconds():.2f} s from process start to the first case")
        jobs, results = self._jobs(cases, output_dir, continue_prediction)
        for kept in results:
            if record is not None:
                record.add(kept)
        run = (lambda js: self.executor(self.spec, js, self.echo)) if self.executor else self.run_jobs
        for job, result, lines in run(jobs):
            self._say(job, result, lines)
            results.append(result)
            times[job.path.name] = {"time": f"{result.seconds:.4f}", "status": result.status}
            self._record(times_path, times)
            if record is not None:
                record.add(result)
                self._record_run(record)
        return results

    def _prepare(self, input_path: Path, output_dir: Path) -> list:
        """The cases of ``input_path``, once the output (and overlay) folders are checked, made and cleared of
        the temporary files of interrupted runs; UsageError naming a folder that cannot be used."""
        check_folders(input_path, output_dir)
        labels = self.spec.inputs.labels if self.spec.inputs is not None else None
        for folder, out in ((output_dir, "output"), (self.spec.overlay_dir, "overlay")):
            if labels is not None and folder is not None:
                check_folders(labels, folder, "--boxes-from-labels", "the label maps", out)
        cases, notices = list_cases(input_path)
        for notice in notices:
            self.echo(f"WARNING: {notice}")
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot make the output folder {shown(output_dir)} ({e.strerror or e})") from None
        if not output_dir.is_dir():
            raise UsageError(f"the output folder {shown(output_dir)} is not a folder")
        if not os.access(output_dir, os.W_OK | os.X_OK):
            raise UsageError(f"the output folder {shown(output_dir)} is not writable by this user (uid {os.getuid()})")
        overlay_dir = self.spec.overlay_dir
        if overlay_dir is not None:
            check_folders(input_path, overlay_dir, out="overlay")
            try:
                overlay_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot make the overlay folder {shown(overlay_dir)} ({e.strerror or e})") from None
            remove_stale_temps(overlay_dir)
        stale = remove_stale_temps(output_dir)
        if stale:
            self.echo(f"removed {len(stale)} temporary file(s) left in {shown(output_dir)} by an interrupted run")
        return cases

    def _jobs(self, cases: list, output_dir: Path, continue_prediction: bool) -> tuple[list, list]:
        """(the jobs to run, the Results of cases whose output is kept: ``continue_prediction`` and a usable
        output of the case's shape)."""
        jobs, kept = [], []
        width = len(str(len(cases)))
        owners = formats.output_owners(cases)  # output name -> the input whose output it is
        for n, path in enumerate(cases, 1):
            target = output_dir / formats.output_name(path)
            prefix = f"[{n:>{width}}/{len(cases)}] {shown(path.name)}"
            exists = continue_prediction and target.exists()
            problem = unusable_output(path, target) if exists else ""
            if problem:
                self.echo(f"WARNING: {shown(target.name)} exists but {problem}: {shown(path.name)} is segmented again")
            if exists and not problem:
                kept.append(Result(path.name, 0.0, "existing", output=target.name))
                self.echo(f"{prefix}: output exists, skipped (--continue-prediction)")
                continue
            jobs.append(CaseJob(path, target, owners[target.name], prefix))
        return jobs, kept

    def _say(self, job: CaseJob, result: Result, lines: list) -> None:
        """A finished case's messages: its lines (those about the run once), its time or its error, its profile."""
        name = shown(job.path.name)
        for line in lines:
            if isinstance(line, Once):
                self._warn_once(line)
            else:
                self.echo(line)
        if result.status == "ok" and not self.quiet:
            self.echo(f"{job.prefix}: {result.seconds:.2f} s ({result.model})")
        elif result.status != "ok":
            self.echo(f"ERROR {name}: {result.message}")
        if self.profile:
            self.echo(f"profile {name}: " + profile_line(result.phases or {}, result.seconds))

    def run_jobs(self, jobs: list):
        """The in-process executor: each job in turn, (job, Result, message lines)."""
        for job in jobs:
            yield (job, *run_case(self.spec, job, self.segmenters, self.bar))

    def _warn_once(self, line: str) -> None:
        if line not in self.warned:
            self.warned.add(line)
            self.echo(line)

    def _record_run(self, record) -> None:
        try:
            record.write()
        except LitemedsamError as e:
            self._warn_once(f"WARNING: {e}; run.json will be written when there is room again")

    def _record(self, path: Path, times: dict) -> None:
        """Rewrite efficiency.csv after a case; when it cannot be written (disk full), say so once per reason
        and go on: the next case tries again, and every case's status is printed anyway."""
        try:
            write_times(path, times)
        except LitemedsamError as e:
            self._warn_once(f"WARNING: {e}; the case times will be written when there is room again")


def run_case(spec: RunSpec, job: CaseJob, segmenters: Segmenters, bar=None) -> tuple:
    """Read, segment and write one case of any format (litemedsam.io.formats): the one function every executor
    calls. Returns its Result and its message lines (``Once`` for those about the run). ``bar`` (case name,
    done, total) shows progress within a long case. Raises ModelError only (nothing can run); every other
    problem fails the case."""
    with timing() as phases:  # its seconds per phase (read, load, encode, decode, write)
        return _run_case(spec, job, segmenters, bar, phases)


def _run_case(spec: RunSpec, job: CaseJob, segmenters: Segmenters, bar, phases) -> tuple:
    path, target = job.path, job.target
    lines: list = []
    start = time.perf_counter()
    plan, objects = None, None
    warnings: list = []
    try:
        formats.check_target(path, target)
        if job.owner != path.name:
            raise CaseError(f"its output {shown(target.name)} is also the output of {shown(job.owner)} "
                            f"(2D images are written as .png); rename one of them")
        with phase("read"):
            case = formats.read(path, spec.inputs, require_boxes=spec.prompting.uses_boxes)
        if spec.prompting.uses_boxes:
            warnings += case.warnings
            lines += [f"WARNING {shown(path.name)}: {warning}" for warning in case.warnings]
        lines += [Once(f"NOTE: {notice}") for notice in case.notices]
        plan = spec.prompting.choose(case)
        lines += [Once(f"WARNING: model {skipped} is not built (missing {missing}); its cases fall back along the "
                       f"router's chain. Build it with: {get_model(skipped).build}")
                  for skipped, missing in plan.skipped]
        pause_if_asked(path.name)  # a test hook (litemedsam.run.pause); nothing without LITEMEDSAM_PAUSE_IN
        with progress.reporting(_reporter(bar, job.prefix, start)), confidence.collecting() as scores:
            segs = spec.prompting.segment(segmenters.get(plan.model), case, plan)
        objects = confidence.summary(scores)
        with phase("write"):
            formats.write(case, segs, target)
        for what, problem in _beside(spec, case, segs, target):
            warnings.append(f"no {what}: {problem}")
            lines.append(f"WARNING {shown(path.name)}: no {what} ({shown(problem)})")
        status, message = "ok", ""
    except ModelError:
        raise
    except LitemedsamError as e:  # the case's file, its output file, or no router rule for it
        status, message = "failed", brief(e)
    except MemoryError:
        status, message = "failed", "out of memory while segmenting this case"
    except Exception as e:  # a bug of ours: report it, keep going with the other cases
        status, message = "failed", f"internal error {type(e).__name__}: {brief(e)}"
        if spec.debug:
            message += "\n" + traceback.format_exc()
    return Result(path.name, time.perf_counter() - start, status, message, plan.model if plan else "",
                  dict(phases), target.name, decision_record(plan), warnings, objects), lines


def _beside(spec: RunSpec, case, segs, target: Path) -> list:
    """The files the run writes beside an output (its overlay, its measurements), as asked: (what, problem) for
    each that could not be written."""
    problems = []
    if spec.overlay_dir is not None:
        problem = _overlay(case, segs, spec.overlay_dir)
        if problem:
            problems.append(("overlay", problem))
    if spec.measurements:
        problem = _measurements(case, segs, target)
        if problem:
            problems.append(("measurements", problem))
    return problems


def _reporter(bar, name: str, start: float):
    """Progress within the case for the bar, once the case has taken more than 2 s."""
    if bar is None:
        return None

    def show(done: int, total: int) -> None:
        if time.perf_counter() - start > 2.0 or done == total:
            bar(name, done, total)
    return show


def _measurements(case, segs, target: Path):
    """Write the objects' measurements beside the output; a failure (returned, else None) is a warning."""
    try:
        with phase("measure"):
            write_text(measurements_file(target), to_csv(formats.measure_case(case, segs)))
        return None
    except (LitemedsamError, OSError, ValueError, MemoryError) as e:
        return e


def _overlay(case, segs, folder: Path):
    """Write the case's overlay PNG; a failure (returned, else None) is a warning: the segmentation is written."""
    from litemedsam.io import overlay

    try:
        with phase("overlay"):
            overlay.write(case, segs, folder)
        return None
    except (LitemedsamError, OSError, ValueError) as e:
        return e
