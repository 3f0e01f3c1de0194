"""What each explainer is, described once: the app, the command line, the benchmark and the docs read this.

A ``MethodSpec`` names the method, its family and paper, what it needs (gradients, a target layer, attention, or
only forward passes), its cost formula (as text and as ``passes``, a function of the parameters and the clip's
shape), the memory it holds besides its batched passes (``held``, also such a function), its default score,
which models it cannot explain and why (``not_applicable``), whether it is stochastic, a plain-language
paragraph, and its parameters with defaults, ranges and one-line help.
``@register`` attaches a spec to the function that computes the map.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FAMILIES = {
    "baseline": "Baselines (no model)",
    "gradient": "Gradient methods",
    "cam": "Class activation maps",
    "perturbation": "Perturbation methods",
    "attention": "Attention (transformers)",
}


MAX_VALUES = 8       # longest list a list parameter takes (EP areas: each is one more mask to optimise)


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None

    @property
    def kind(self) -> str:
        if self.choices is not None:
            return "choice"
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "int"
        if isinstance(self.default, float):
            return "float"
        if isinstance(self.default, tuple):
            return "ints" if all(isinstance(v, int) for v in self.default) else "floats"
        return "str"

    def summary(self) -> dict:
        """The parameter as JSON: name, kind, default, range or choices where it has them, help."""
        bounds = {"minimum": self.minimum, "maximum": self.maximum,
                  "choices": None if self.choices is None else list(self.choices)}
        return {"name": self.name, "kind": self.kind, "default": plain(self.default),
                **{k: v for k, v in bounds.items() if v is not None}, "help": self.help}

    def validate(self, value: Any) -> Any:
        """The value in the parameter's type and range; ``ValueError`` with a message for a person otherwise."""
        try:
            return self._validate(value)
        except (TypeError, OverflowError) as e:
            raise ValueError(f"{self.name}: {value!r} is not a valid value ({e})") from None

    def _validate(self, value: Any) -> Any:
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
        if self.kind == "bool" and not isinstance(value, bool):        # "false" would otherwise count as true
            raise ValueError(f"{self.name} must be true or false, got {value!r}")
        if self.kind == "str" and not (value is None or isinstance(value, str)):
            raise ValueError(f"{self.name} must be text, got {value!r}")
        wanted = {"int": "a whole number", "float": "a number", "floats": "one or more numbers",
                  "ints": f"a list of {len(self.default) if self.kind == 'ints' else 0} whole numbers"}
        if self.kind in wanted and not _numbers(value, whole=self.kind in ("int", "ints"),
                                                 listed=self.kind == "ints"):
            raise ValueError(f"{self.name} must be {wanted[self.kind]}, got {value!r}")
        if self.kind in ("int", "float"):
            value = int(value) if self.kind == "int" else float(value)
            too_low = self.minimum is not None and value < self.minimum
            if too_low or (self.maximum is not None and value > self.maximum):
                raise ValueError(f"{self.name}={value} is outside [{self.minimum}, {self.maximum}]")
        if self.kind == "ints":
            value = tuple(int(v) for v in value)
            lo, hi = self.minimum or 0, self.maximum
            if len(value) != len(self.default) or any(v < lo or (hi is not None and v > hi) for v in value):
                within = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"{self.name} needs {len(self.default)} integers {within}, got {value}")
        if self.kind == "floats":  # 1 to MAX_VALUES values, each in [minimum, maximum]
            value = tuple(float(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))
            lo, hi = self.minimum, self.maximum
            if not 1 <= len(value) <= MAX_VALUES or any((lo is not None and v < lo) or (hi is not None and v > hi)
                                                        for v in value):
                raise ValueError(f"{self.name} needs 1 to {MAX_VALUES} numbers in [{lo}, {hi}], got {value}")
        return value


def plain(value: Any) -> Any:
    """A parameter value as JSON has it: tuples as lists."""
    return list(value) if isinstance(value, tuple) else value


PassCount = Callable[[dict, tuple[int, int, int]], tuple[int, int]]
Footprint = Callable[[dict, tuple[int, int, int]], int]
CLIP_BUFFERS = 8     # clip-sized float buffers a method may hold at once (map, baseline, sums, masks of a batch)


def few_clips(params: dict, shape: tuple[int, int, int]) -> int:
    """Values (float32) a method holds besides its batched passes when it streams its work: ``CLIP_BUFFERS``
    colour clips."""
    return CLIP_BUFFERS * 3 * math.prod(shape)


def any_model(model: Any) -> str | None:
    return None


def one_forward(params: dict, shape: tuple[int, int, int]) -> tuple[int, int]:
    return 1, 0


def one_pair(params: dict, shape: tuple[int, int, int]) -> tuple[int, int]:
    return 1, 1


@dataclass(frozen=True)
class MethodSpec:
    id: str
    name: str
    family: str
    paper: str
    needs: str                       # "nothing" | "forward" | "gradients" | "target_layer" | "attention"
    cost: str                        # passes, as a formula of the parameters
    description: str
    fn: Callable
    passes: PassCount                # the formula as a function: (forward, backward) clip passes, at most
    params: tuple[Param, ...] = ()
    held: Footprint = few_clips      # float32 values held besides the batched passes, at most
    overhead: float = 1.0            # a run's seconds / its passes' seconds on a CPU (benchmarks.estimates): the
                                     # method's own work besides the model (mask generator, optimiser)
    score: str = "logit"             # default score (docs/methods.md §20.1)
    stochastic: bool = False
    presets: dict[str, dict] = field(default_factory=dict)
    not_applicable: Callable[[Any], str | None] = any_model   # why the method cannot explain a model, or None

    def resolve(self, preset: str | None, overrides: dict) -> dict:
        """Defaults, then the preset, then explicit overrides; every value checked against its Param."""
        known = {p.name: p for p in self.params}
        unknown = set(overrides) - set(known)
        if unknown:
            raise TypeError(f"{self.id} has no parameter(s) {sorted(unknown)}; it takes {sorted(known) or 'none'}")
        if preset is not None and preset not in self.presets and preset != "default":
            raise ValueError(f"{self.id} has no preset {preset!r}; presets: {sorted(self.presets) or 'none'}")
        values = {p.name: p.default for p in self.params}
        values.update(self.presets.get(preset or "", {}))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return {k: known[k].validate(v) for k, v in values.items()}

    def summary(self) -> dict:
        """What the method is, as JSON: id, name, family, paper, needs, cost, description, default score, whether
        it is stochastic, its presets' values and its parameters (``Param.summary``)."""
        return {"id": self.id, "name": self.name, "family": FAMILIES[self.family], "paper": self.paper,
                "needs": self.needs, "cost": self.cost, "description": self.description, "score": self.score,
                "stochastic": self.stochastic,
                "presets": {name: {k: plain(v) for k, v in values.items()} for name, values in self.presets.items()},
                "params": [p.summary() for p in self.params]}

    def preset_or_none(self, preset: str | None) -> str | None:
        """``preset`` if this method has it, else None (its defaults): how the app and the CLI apply one preset name
        to methods that may not have it."""
        return preset if preset in self.presets else None

    def count(self, params: dict, shape: tuple[int, int, int]) -> tuple[int, int]:
        """Clip passes (forward, backward) of one run with resolved ``params`` on a T×H×W clip, known before it
        runs: exact, or an upper bound where the method adapts (AOSA's letter-box rows, AOSA-approx's
        re-expansions)."""
        return self.passes(params, shape)

    def memory(self, params: dict, shape: tuple[int, int, int]) -> int:
        """Bytes one run with resolved ``params`` holds besides its batched passes (masks, maps, buffers), at
        most: with the passes' own memory (clips per pass × what one clip's pass keeps), its peak."""
        return 4 * self.held(params, shape)


def _numbers(value: Any, whole: bool, listed: bool) -> bool:
    """A number, or a list/tuple of numbers (``listed``: only a list), each whole where ``whole``; bools are not
    numbers here, numeric strings are."""
    is_list = isinstance(value, (list, tuple))
    if listed and not is_list:
        return False
    for v in value if is_list else [value]:
        try:
            number = float(v)
        except (TypeError, ValueError):
            return False
        if isinstance(v, bool) or (whole and not number.is_integer()):
            return False
    return True


REGISTRY: dict[str, MethodSpec] = {}


def register(id: str, **spec: Any) -> Callable[[Callable], Callable]:
    """Decorator: record ``fn`` as the implementation of method ``id``."""
    def wrap(fn: Callable) -> Callable:
        if id in REGISTRY:
            raise ValueError(f"method {id!r} registered twice")
        if spec["family"] not in FAMILIES:
            raise ValueError(f"unknown family {spec['family']!r}")
        REGISTRY[id] = MethodSpec(id=id, fn=fn, **spec)
        return fn
    return wrap


def get_method(method: str) -> MethodSpec:
    if method not in REGISTRY:
        raise KeyError(f"unknown method {method!r}; available: {', '.join(REGISTRY)}")
    return REGISTRY[method]


def preset_choices(method: str | None = None) -> list[str]:
    """The presets of ``method``, or of every method, and "default" (no preset): what the app and the CLI take."""
    specs = [get_method(method)] if method else REGISTRY.values()
    return [*dict.fromkeys(p for spec in specs for p in spec.presets), "default"]


def methods_by_family() -> dict[str, list[MethodSpec]]:
    """Specs grouped by family, in registration order (for menus)."""
    groups: dict[str, list[MethodSpec]] = {f: [] for f in FAMILIES}
    for spec in REGISTRY.values():
        groups[spec.family].append(spec)
    return {f: specs for f, specs in groups.items() if specs}


def methods_table() -> str:
    """Every method as a markdown table row (id, name, cost), in menu order: the README's methods table is this text,
    checked by a test."""
    rows = ["| id | method | cost (passes) |", "|---|---|---|"]
    rows += [f"| `{s.id}` | {s.name} | {s.cost} |" for s in REGISTRY.values()]
    return "\n".join(rows)
