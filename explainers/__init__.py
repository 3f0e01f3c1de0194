"""Explainers for video classifiers: one call for every method, pure PyTorch (no UI, no files, no network).

    from explainers import explain
    e = explain(model, x, "grad_cam")            # x: 1×C×T×H×W, normalised as the model expects
    e.saliency                                    # T×H×W in [0, 1]

``model`` is any ``nn.Module`` mapping B×C×T×H×W to logits; a model that also has ``labels``, ``target_layers``,
``input_spec`` and ``token_grid`` (as the zoo's ``VideoClassifier`` does) gets them used. ``REGISTRY`` describes
every method (family, paper, needs, cost, parameters) for menus and docs.

A method is one function ``fn(ctx: Context, **params) -> MethodOutput`` decorated with ``@register(id, ...)``
(a ``MethodSpec`` with its ``Param``s); docs/methods.md §22 says what a new method's author touches.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from explainers.context import Cancelled, Context, MethodOutput, ProgressFn
from explainers.device import default_batch
from explainers.layers import eval_mode
from explainers.maps import normalise
from explainers.registry import FAMILIES, REGISTRY, MethodSpec, Param, get_method, methods_by_family, register

# Importing a method module registers its methods; this order is the order of menus and tables.
METHOD_MODULES = ("baselines", "gradients", "cam", "occlusion", "aosa", "swag", "extremal", "attention")
for _module in METHOD_MODULES:
    importlib.import_module(f"explainers.{_module}")

__all__ = ["explain", "Explanation", "Cancelled", "REGISTRY", "FAMILIES", "MethodSpec", "Param", "get_method",
           "methods_by_family", "register", "Context", "MethodOutput", "ProgressFn"]


@dataclass
class Explanation:
    """One saliency volume and everything needed to read and reproduce it."""

    saliency: torch.Tensor          # T×H×W, float, in [0, 1]
    raw: torch.Tensor | None        # the signed or un-normalised map where one exists
    method: str
    params: dict
    target: int
    target_label: str
    score: str                      # "logit" | "prob": what the method explained
    target_logit: float
    target_prob: float
    seed: int
    forward_passes: int
    backward_passes: int
    seconds: float
    extras: dict = field(default_factory=dict)

    @property
    def frame_importance(self) -> torch.Tensor:
        """Share of the saliency mass in each frame (sums to 1; uniform if the map is empty)."""
        mass = self.saliency.sum((1, 2))
        return mass / mass.sum() if mass.sum() > 0 else torch.full_like(mass, 1 / len(mass))

    def summary(self) -> dict:
        """JSON-serialisable description (no tensors) for reports and downloads."""
        return {"method": self.method, "params": self.params, "target": self.target,
                "target_label": self.target_label, "score": self.score, "target_logit": self.target_logit,
                "target_prob": self.target_prob, "seed": self.seed, "forward_passes": self.forward_passes,
                "backward_passes": self.backward_passes, "seconds": round(self.seconds, 4)}


def _check_clip(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[0] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected one clip as a 1×C×T×H×W tensor, got {shape}")
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():    # the sum is finite for almost every clip
        raise ValueError("the clip contains NaN or infinite values")


def explain(model: nn.Module, x: torch.Tensor, method: str = "grad_cam", target: int | None = None,
            score: str | None = None, seed: int = 0, preset: str | None = None, max_batch: int | None = None,
            progress: ProgressFn | None = None, **params) -> Explanation:
    """Explain ``model``'s score for class ``target`` (default: its top-1 class) on clip ``x`` with ``method``.

    ``score`` is "logit" or "prob" (default: the method's, docs/methods.md §20.1); ``preset`` picks a parameter set
    (e.g. "fast", "paper"); ``params`` override single parameters. ``progress(fraction, message)`` is called
    as the work advances; returning False cancels (``Cancelled`` is raised). Perturbations run in batches of at
    most ``max_batch`` clips (default: 4 on a CPU, 32 on a GPU). Forward-only methods and the EP family take
    ``precision="bf16"`` for their perturbed passes (the target and its reported score stay fp32). The model's
    mode and parameters are left as they were.
    """
    spec = get_method(method)
    values = spec.resolve(preset, params)
    _check_clip(x)
    reason = spec.not_applicable(model)
    if reason is not None:
        raise ValueError(f"{spec.name} cannot explain this model: {reason}")
    if score not in (None, "logit", "prob"):
        raise ValueError(f"score must be 'logit' or 'prob', got {score!r}")
    device = next((p.device for p in model.parameters()), x.device)
    max_batch = default_batch(device) if max_batch is None else max_batch
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    x = x.detach().to(device)
    with eval_mode(model):
        start = time.perf_counter()
        ctx = Context(model, x, None if target is None else int(target), score or spec.score,
                      torch.Generator().manual_seed(seed), max_batch, progress,
                      precision=values.get("precision", "fp32"))
        out = spec.fn(ctx, **{k: v for k, v in values.items() if k != "precision"})
        logits, target = ctx.logits, ctx.target
        seconds = time.perf_counter() - start
    labels = getattr(model, "labels", ())
    saliency = normalise(out.saliency.detach().float().cpu())
    return Explanation(
        saliency=saliency, raw=None if out.raw is None else out.raw.detach().cpu(), method=method, params=values,
        target=target, target_label=labels[target] if target < len(labels) else f"class {target}",
        score=ctx.score, target_logit=float(logits[target]), target_prob=float(logits.softmax(-1)[target]),
        seed=seed, forward_passes=ctx.counter.forward, backward_passes=ctx.counter.backward, seconds=seconds,
        extras=out.extras)
