"""The modality router: which models (a fallback chain) and strategy segment a case, from a declarative TOML file.
A decision depends on the case's name, dimension and modality only (no disk, no timing): which model of the
chain is built, and float or int8, is chosen where sessions are made (litemedsam.methods.prompting.choose_model)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from litemedsam.io.cases import name_tags
from litemedsam.core.errors import RouterError, shown
from litemedsam.core.masks import COMPONENTS, EXACT, OVERLAPS, MaskPolicy
from litemedsam.methods.propagation import Propagation
from litemedsam.models.registry import FITTED, MODELS, fitted_modality, get_model

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG = Path(__file__).with_name("router.toml")
STRATEGIES = ("propagate", "multiview")
PROMPTS = ("box", "box+center")
MAX_ROUTER_BYTES = 1 << 20
RULE_KEYS = {"name", "dim", "modality", "models", "strategy", "margin", "prompt", "stride", "stop",
             "clip", "component", "fill", "overlap", "smooth", "middle"}


@dataclass(frozen=True)
class Rule:
    """One [[rules]] entry: the cases it matches (dimension, modalities), its models' fallback chain and how their
    boxes become label maps."""

    name: str
    models: tuple
    dim: str | None = None
    modality: tuple | None = None
    propagation: Propagation = Propagation()

    def matches(self, dim: str | None, modality: str | None) -> bool:
        return (self.dim is None or self.dim == dim) and (self.modality is None or modality in self.modality)


@dataclass(frozen=True)
class Decision:
    """What the router chose for one case (which model of the chain runs is chosen apart, where sessions are made:
    litemedsam.methods.prompting.choose_model)."""

    case: str
    dim: str | None
    tag: str | None  # the <Mod> of the file name, as written
    modality: str | None  # its canonical name, None when unknown
    rule: str
    models: tuple  # the rule's fallback chain (or the model asked for): the first built one segments
    propagation: Propagation = Propagation()

    def describe(self, model: str | None = None, skipped: tuple = ()) -> str:
        """One line (and one per model passed over): the case, the ``model`` that runs and how."""
        how = self.propagation
        mod = self.modality or (f"unknown modality {self.tag!r}" if self.tag else "no modality in the name")
        text = f"{shown(self.case)}: {self.dim or '?'} {mod} -> {model or 'NO MODEL'}"
        if self.dim == "3D":
            text += f", {how.describe()}"
        if how.prompt != "box" and model and how.prompt in get_model(model).kind.prompt_styles:
            text += f", prompt {how.prompt}"
        if not how.policy.exact:
            text += f", masks: {how.policy.describe()}"
        text += f"  [rule {self.rule!r}]"
        for name, missing in skipped:
            text += f"\n    {name} skipped: not built (missing {missing})"
        return text


def _list(value, what: str, source: str) -> tuple:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RouterError(f"{source}: {what} must be a string or a non-empty list of strings, got {value!r}")
    return tuple(value)


def _policy(raw: dict, where: str) -> MaskPolicy:
    """A rule's mask strategies (clip, component, fill, overlap, smooth, middle), checked."""
    clip = raw.get("clip")
    if clip is not None and (not isinstance(clip, int) or isinstance(clip, bool) or not 0 <= clip <= 256):
        raise RouterError(f"{where}: clip must be an integer 0-256 (pixels of a 256 frame), got {clip!r}")
    component = raw.get("component", "")
    if component not in COMPONENTS:
        raise RouterError(f"{where}: component must be one of {', '.join(map(repr, COMPONENTS))}, got {component!r}")
    fill = raw.get("fill", False)
    if not isinstance(fill, bool):
        raise RouterError(f"{where}: fill must be true or false, got {fill!r}")
    overlap = raw.get("overlap", "label")
    if overlap not in OVERLAPS:
        raise RouterError(f"{where}: overlap must be one of {', '.join(OVERLAPS)}, got {overlap!r}")
    smooth = raw.get("smooth", 0)
    if not isinstance(smooth, int) or isinstance(smooth, bool) or not (smooth == 0 or 2 <= smooth <= 100):
        raise RouterError(f"{where}: smooth must be 0 (off) or an integer area ratio 2-100, got {smooth!r}")
    middle = raw.get("middle", False)
    if not isinstance(middle, bool):
        raise RouterError(f"{where}: middle must be true or false, got {middle!r}")
    return MaskPolicy(clip, component, fill, overlap, smooth, middle)


def _spellings(modalities: dict, source: str) -> dict:
    """[modalities]: lower-case spelling -> canonical name, each spelling given for one modality only."""
    spellings: dict = {}
    for canonical, names in modalities.items():
        for spelling in (canonical, *_list(names, f"modalities.{canonical}", source)):
            other = spellings.setdefault(spelling.lower(), canonical)
            if other != canonical:
                raise RouterError(f"{source}: spelling {spelling!r} is given for both {other} and {canonical}")
    return spellings


def _models(raw: dict, where: str) -> tuple:
    """A rule's fallback chain: models of the registry that take boxes."""
    if "models" not in raw:
        raise RouterError(f"{where}: 'models' (the fallback chain) is required")
    models = _list(raw["models"], "models", where)
    boxed = sorted(name for name, spec in MODELS.items() if spec.takes_boxes)
    for m in models:
        if m not in MODELS:
            raise RouterError(f"{where}: unknown model {m!r}; known: {', '.join(boxed)}")
        if not MODELS[m].takes_boxes:
            raise RouterError(f"{where}: {m} takes no boxes (use it with infer --prompt none); "
                              f"box models: {', '.join(boxed)}")
    return models


def _propagation(raw: dict, where: str) -> Propagation:
    """A rule's strategy, prompt, margin, stride, stop and mask strategies, checked."""
    strategy = raw.get("strategy", "propagate")
    if strategy not in STRATEGIES:
        raise RouterError(f"{where}: strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    prompt = raw.get("prompt", "box")
    if prompt not in PROMPTS:
        raise RouterError(f"{where}: prompt must be one of {', '.join(PROMPTS)}, got {prompt!r}")
    numbers = {}
    for key, default, low, high in (("margin", 3, 0, 64), ("stride", 1, 1, 16), ("stop", 0, 0, 64)):
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise RouterError(f"{where}: {key} must be an integer {low}-{high}, got {value!r}")
        numbers[key] = value
    return Propagation(strategy, prompt=prompt, policy=_policy(raw, where), **numbers)


def _rule(raw, i: int, modalities: dict, source: str) -> Rule:
    """[[rules]] entry ``i`` (from 1), checked; RouterError naming it and what is wrong."""
    where = f"{source}: rule {i}"
    if not isinstance(raw, dict):
        raise RouterError(f"{where} must be a table")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise RouterError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    models = _models(raw, where)
    dim = raw.get("dim")
    if dim is not None and dim not in ("2D", "3D"):
        raise RouterError(f"{where}: dim must be \"2D\" or \"3D\", got {dim!r}")
    modality = raw.get("modality")
    if modality is not None:
        modality = _list(modality, "modality", where)
        for m in modality:
            if m not in modalities:
                raise RouterError(f"{where}: modality {m!r} is not in [modalities]")
    return Rule(str(raw.get("name", f"rule {i}")), models, dim, modality, _propagation(raw, where))


class Router:
    def __init__(self, spellings: dict, rules: list, source: str = "router"):
        self.spellings = spellings  # lower-case spelling -> canonical modality
        self.rules = rules
        self.source = source

    @classmethod
    def load(cls, path: Path | None = None) -> "Router":
        path = Path(path) if path else DEFAULT_CONFIG
        source = shown(path)
        try:
            if not path.is_file():  # a folder, FIFO or device would block or mislead
                raise RouterError(f"{source}: not a regular file" if path.exists() else f"{source}: no such file")
            if path.stat().st_size > MAX_ROUTER_BYTES:
                raise RouterError(f"{source}: {path.stat().st_size} bytes; a router file is at most {MAX_ROUTER_BYTES}")
            text = path.read_bytes().decode("utf-8")
            data = tomllib.loads(text)
        except OSError as e:
            raise RouterError(f"{source}: cannot read it ({e.strerror or e})") from None
        except UnicodeDecodeError:
            raise RouterError(f"{source}: not a text file (not UTF-8); a router file is TOML text") from None
        except tomllib.TOMLDecodeError as e:
            raise RouterError(f"{source}: not valid TOML ({e})") from None
        router = cls.from_dict(data, source)
        # a router of your own decides for itself; a modality the shipped one does not know goes nowhere
        fitted = router.modality(fitted_modality()) if path == DEFAULT_CONFIG else None
        return router.preferring(FITTED, fitted) if fitted else router

    @classmethod
    def from_dict(cls, data: dict, source: str = "router") -> "Router":
        if data.get("version") != 1:
            raise RouterError(f"{source}: 'version = 1' expected, got {data.get('version')!r}")
        unknown = set(data) - {"version", "modalities", "rules"}
        if unknown:
            raise RouterError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}")
        modalities = data.get("modalities", {})
        if not isinstance(modalities, dict):
            raise RouterError(f"{source}: [modalities] must be a table")
        spellings = _spellings(modalities, source)
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise RouterError(f"{source}: at least one [[rules]] entry is needed")
        return cls(spellings, [_rule(raw, i, modalities, source) for i, raw in enumerate(raw_rules, 1)], source)

    def preferring(self, model: str, modality: str) -> "Router":
        """This router with ``model`` first in the chain of every rule that can take a ``modality`` case (a copy of the
        rule for that modality alone, just before it: the same propagation and masks). The shipped router so sends
        the modality ``litemedsam fit --modality`` fitted its model for to that model (its chain falls back to the
        rule's own models if it is not built)."""
        rules = []
        for rule in self.rules:
            if rule.modality is None or modality in rule.modality:
                rules.append(replace(rule, name=f"{rule.name}, fitted for {modality}", modality=(modality,),
                                     models=(model, *(m for m in rule.models if m != model))))
            rules.append(rule)
        return Router(self.spellings, rules, self.source)

    def modality(self, tag: str | None) -> str | None:
        """Canonical modality of a spelling (whole word, any case), None when unknown."""
        return self.spellings.get(tag.lower()) if tag else None

    def check_modality(self, given, option: str = "--modality") -> None:
        """RouterError naming ``option`` unless ``given`` (None: none given) is a spelling of one of its modalities."""
        if given is not None and not (isinstance(given, str) and self.modality(given)):
            raise RouterError(f"{option} {shown(str(given))!r} is not a modality of {self.source}; known: "
                              + ", ".join(sorted(set(self.spellings.values()))))

    def decide(self, case: str, dim: str | None = None, modality: str | None = None,
               model: str | None = None, exact: bool = False) -> Decision:
        """The decision for a case file name. ``dim`` overrides the name's 2DBox_/3DBox_; ``modality``
        (a spelling or canonical name) overrides the name's <Mod>; ``model`` overrides the chain; ``exact``
        turns off the rule's faster options (stride, stop) and mask strategies, giving the reference's masks."""
        named_dim, named = name_tags(Path(case).name)
        # a 2025 name's first word (CT_Lesion_...) is a modality only when it is a known spelling
        tag = modality or (named if named_dim or self.modality(named) else None)
        dim = dim or named_dim
        canonical = self.modality(tag)
        rule = next((r for r in self.rules if r.matches(dim, canonical)), None)
        if rule is None:
            raise RouterError(f"{self.source}: no rule matches {dim or 'unknown dimension'} "
                              f"{canonical or tag or 'unknown modality'} (add a last rule without dim or modality)")
        how = replace(rule.propagation, stride=1, stop=0, policy=EXACT) if exact else rule.propagation
        return Decision(Path(case).name, dim, tag, canonical, rule.name, (model,) if model else rule.models, how)
