"""Baselines that ignore the model, so every table has its floor: ``random`` and ``centre``."""
from __future__ import annotations

import torch

from explainers.context import Context, MethodOutput
from explainers.registry import one_forward, register


@register("random", name="Random", family="baseline", paper="floor of every table ([S0], [S1])", needs="nothing",
          cost="1 forward (the clean clip, for the target class)", passes=one_forward, stochastic=True,
          description="Uniform random noise, seeded. Any explainer worth using must beat it on every metric.")
def random_map(ctx: Context) -> MethodOutput:
    return MethodOutput(torch.rand(ctx.shape, generator=ctx.generator))


@register("centre", name="Centre", family="baseline", paper="centre-bias floor (docs/methods.md §20.9)",
          needs="nothing", cost="1 forward (the clean clip, for the target class)", passes=one_forward,
          description="Importance falls with the distance to the frame centre, the same in every frame: the "
                      "score of a guess that the action happens in the middle of the picture.")
def centre_map(ctx: Context) -> MethodOutput:
    t, h, w = ctx.shape
    y = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    dist = torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    return MethodOutput((1 - dist / dist.max()).expand(t, h, w).clone())
