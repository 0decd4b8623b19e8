"""How the cases of a run are prompted: one protocol, four ways.

A prompting says which model segments a case (``choose``, before any model is loaded) and segments it with
that model's runtime object (``segment``); ``uses_boxes`` says whether the case's boxes are read.

- ``BoxPrompting``: the case's boxes, model and strategy from the router (the challenge path);
- ``SelfPrompt`` (litemedsam.methods.selfprompt), ``OneShot`` (litemedsam.methods.oneshot), ``Promptless``
  (litemedsam.methods.promptless): no boxes; each 2D image, or each slice of a 3D volume, is segmented alone
  (``SlicePrompting``), label 1 or the model's classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from litemedsam.models import fastest
from litemedsam.io.cases import Case
from litemedsam.core.errors import CaseError, ModelError
from litemedsam.methods import recist
from litemedsam.methods.pipeline import segment_case
from litemedsam.methods.refine import segment_with_clicks
from litemedsam.methods.router import Decision
from litemedsam.models.registry import get_model, missing_file


@dataclass(frozen=True)
class ModelChoice:
    """Which model of a decision's chain runs on this machine (``choose_model``: disk and timing, apart from the
    router's pure decision): the first built one (None: none is), those passed over with the file each lacks, and
    why its float or int8 encoder runs (litemedsam.models.fastest)."""

    model: str | None
    skipped: tuple = ()
    encoder: str = ""


@dataclass(frozen=True)
class Plan:
    """What segments one case: the model, and, for box prompts, the router's decision and how the model was chosen."""

    model: str
    decision: Decision | None = None
    choice: ModelChoice | None = None

    @property
    def skipped(self) -> tuple:
        """(model, missing file) passed over for this case (the router's fallback chain)."""
        return self.choice.skipped if self.choice is not None else ()


class Prompting(Protocol):
    name: str
    uses_boxes: bool

    def choose(self, case: Case) -> Plan: ...

    def segment(self, segmenter, case: Case, plan: Plan) -> np.ndarray: ...


class BoxPrompting:
    """The case's boxes prompt the model the router picks (``model``/``modality`` override it; ``exact`` turns
    off the router's faster 3D options and mask strategies)."""

    name = "box prompts"
    uses_boxes = True

    def __init__(self, router, model: str | None = None, modality: str | None = None, exact: bool = False):
        self.router, self.model, self.modality, self.exact = router, model, modality, exact
        if not exact:  # time int8 against float here, once per machine, before any worker process needs it
            for name in {model} if model else {m for rule in router.rules for m in rule.models}:
                fastest.choose(name)

    def choose(self, case: Case) -> Plan:
        decision = self.router.decide(case.path.name, dim=case.dim, modality=self.modality or case.modality,
                                      model=self.model, exact=self.exact)
        choice = choose_model(decision.models, exact=self.exact)
        if choice.model is None:
            raise ModelError(f"no model of rule {decision.rule!r} is built: " + "; ".join(
                f"{m}: missing {x} (build it with: {get_model(m).build})" for m, x in choice.skipped))
        if case.lines is not None:  # a line says where its lesion is on one slice, not where it ends
            decision = recist.with_end(decision)
        return Plan(choice.model, decision, choice)

    def model_of(self, dim: str) -> str | None:
        """The model a ``dim`` case of this prompting's modality (if any) runs, before any case comes (None: none
        of its rule's models is built)."""
        decision = self.router.decide("", dim=dim, modality=self.modality, model=self.model, exact=self.exact)
        return choose_model(decision.models, exact=self.exact).model

    def segment(self, segmenter, case: Case, plan: Plan) -> np.ndarray:
        assert plan.decision is not None, "a box prompt's plan carries the router's decision (choose)"
        how = plan.decision.propagation
        if case.lines is not None:
            case = recist.as_boxes(case)

        def boxes(c):
            return segment_case(segmenter, c, how)
        return boxes(case) if case.clicks is None else segment_with_clicks(segmenter, case, boxes)


def choose_model(models: tuple, directory: Path | None = None, exact: bool = False) -> ModelChoice:
    """The model of the chain ``models`` that runs: the first whose files are built (in ``directory``, default the
    work dir; those passed over in ``skipped``, with the file each lacks), then its float or int8 encoder as this
    machine's timing chose (litemedsam.models.fastest; float under ``exact``)."""
    skipped: list = []
    for name in models:
        missing = missing_file(get_model(name), directory)
        if missing is None:
            if exact:
                return ModelChoice(name, tuple(skipped))
            fast = fastest.choose(name, directory)
            return ModelChoice(fast.model, tuple(skipped), fast.reason)
        skipped.append((name, missing))
    return ModelChoice(None, tuple(skipped))


class SlicePrompting:
    """A box-free way: ``segment_image`` labels one 2D image; 3D volumes go slice by slice."""

    name = "box-free prompting"
    uses_boxes = False
    dims: tuple[str, ...] = ("2D", "3D")
    model = "litemedsam"

    def choose(self, case: Case) -> Plan:
        if case.dim not in self.dims:
            raise CaseError(f"{self.name} segments {' and '.join(self.dims)} cases, not {case.dim}")
        return Plan(self.model)

    def segment(self, segmenter, case: Case, plan: Plan) -> np.ndarray:
        if case.dim == "3D":
            return np.stack([self.segment_image(segmenter, image) for image in case.image])
        return self.segment_image(segmenter, case.image)

    def segment_image(self, segmenter, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError
