"""Gradient methods on the full B×C×T×H×W input: vanilla gradient, guided backprop, input × gradient,
integrated gradients and SmoothGrad (with SmoothGrad² and VarGrad).

Written on the core's batched gradient primitive rather than wrapping Captum, so that passes are counted,
memory-capped and cancellable the same way for every method; ``tests/test_explainers.py`` checks them against
Captum and against analytic answers on a linear model.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from explainers.context import Context, MethodOutput
from explainers.layers import forward_hooks
from explainers.maps import blur_frames
from explainers.registry import Param, one_pair, register

CHANNELS = Param("channels", "abs_max", "how the colour channels become one value per voxel",
                 choices=("abs_max", "abs_sum", "sum"))


def reduce_channels(raw: torch.Tensor, how: str) -> torch.Tensor:
    """C×T×H×W attribution → T×H×W: max |·| over channels (Simonyan), sum of |·|, or signed sum."""
    if how == "abs_max":
        return raw.abs().amax(0)
    if how == "abs_sum":
        return raw.abs().sum(0)
    return raw.sum(0)


def _input_gradient(ctx: Context) -> torch.Tensor:
    return ctx.gradients(lambda sl: ctx.x, 1, message="gradient")[0]


@register("gradient", name="Gradient (saliency)", family="gradient", paper="Simonyan et al. 2014; [S0] baseline",
          needs="gradients", cost="1 forward + 1 backward", passes=one_pair, params=(CHANNELS,),
          description="How much the class score changes when each pixel of each frame changes a little: the "
                      "derivative of the score with respect to the input. Cheap and sharp, but noisy.")
def gradient(ctx: Context, channels: str) -> MethodOutput:
    g = _input_gradient(ctx)
    return MethodOutput(reduce_channels(g, channels), raw=g)


@register("input_x_gradient", name="Input × gradient", family="gradient", paper="Shrikumar et al. 2016; [S0] baseline",
          needs="gradients", cost="1 forward + 1 backward", passes=one_pair,
          params=(Param("channels", "abs_sum", CHANNELS.help, choices=CHANNELS.choices),),
          description="The gradient multiplied by the input itself: a first-order estimate of how much each "
                      "voxel contributes to the score compared with a mean-coloured clip.")
def input_x_gradient(ctx: Context, channels: str) -> MethodOutput:
    raw = _input_gradient(ctx) * ctx.x[0]
    return MethodOutput(reduce_channels(raw, channels), raw=raw)


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes the gradient only where the input was positive and the gradient is positive."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0) * (grad > 0)


@contextlib.contextmanager
def guided_relus(model: nn.Module):
    """Pass the output of every ``nn.ReLU`` module through the guided one (a forward hook: this thread's passes
    only, ``forward_hooks``; functional ReLUs are not reached). Its backward masks by the ReLU's output, positive
    exactly where the input was, so an in-place ReLU needs no change."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    with forward_hooks((m, lambda _m, _inputs, out: _GuidedReLU.apply(out)) for m in relus):
        yield len(relus)


@register("guided_backprop", name="Guided backprop", family="gradient", paper="Springenberg et al. 2015; [S0], [S4]",
          needs="gradients", cost="1 forward + 1 backward", passes=one_pair, params=(CHANNELS,),
          description="The gradient, but every ReLU only lets positive evidence flow back. Sharper, more "
                      "image-like maps; known to depend little on the model's upper layers.")
def guided_backprop(ctx: Context, channels: str) -> MethodOutput:
    with guided_relus(ctx.model) as count:
        g = _input_gradient(ctx)
    return MethodOutput(reduce_channels(g, channels), raw=g, extras={"guided_relus": count})


def _baseline(ctx: Context, kind: str) -> torch.Tensor:
    if kind == "zeros":
        return torch.zeros_like(ctx.x)
    return blur_frames(ctx.x, sigma=5.0 * ctx.shape[1] / 112)


def path_points(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions α in [0, 1] and weights of the path integral (Gauss–Legendre or Riemann rules)."""
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return (x + 1) / 2, w / 2
    k = np.arange(steps)
    alphas = {"riemann_left": k / steps, "riemann_right": (k + 1) / steps, "riemann_middle": (k + 0.5) / steps,
              "riemann_trapezoid": k / max(steps - 1, 1)}[rule]
    weights = np.full(steps, 1 / steps)
    if rule == "riemann_trapezoid":
        weights = np.full(steps, 1 / max(steps - 1, 1))
        weights[[0, -1]] /= 2
    return alphas, weights


@register("integrated_gradients", name="Integrated gradients", family="gradient", paper="Sundararajan et al. 2017",
          needs="gradients", cost="steps × (forward + backward) + 1 forward",
          passes=lambda p, shape: (p["steps"] + 1, p["steps"]),
          params=(Param("steps", 32, "points on the path from the baseline to the clip", 2, 512),
                  Param("baseline", "zeros", "start of the path: zeros (mean colour) or a blurred clip",
                        choices=("zeros", "blur")),
                  Param("rule", "gausslegendre", "quadrature rule of the path integral",
                        choices=("gausslegendre", "riemann_middle", "riemann_left", "riemann_right",
                                 "riemann_trapezoid")),
                  Param("channels", "abs_sum", CHANNELS.help, choices=CHANNELS.choices)),
          presets={"fast": {"steps": 16}, "paper": {"steps": 64}},
          description="Adds up the gradients along a straight path from a featureless clip to the real one. "
                      "The attributions sum to the score difference (completeness). Costs one backward per step.")
def integrated_gradients(ctx: Context, steps: int, baseline: str, rule: str, channels: str) -> MethodOutput:
    base = _baseline(ctx, baseline)
    delta = ctx.x - base
    alphas, weights = path_points(steps, rule)
    alphas_t = torch.tensor(alphas).view(-1, 1, 1, 1, 1).to(ctx.x)
    weights_t = torch.tensor(weights).view(-1, 1, 1, 1, 1).to(ctx.x)
    total = torch.zeros_like(ctx.x[0])

    def accumulate(g: torch.Tensor, _xs: torch.Tensor, sl: slice) -> None:
        total.add_((g * weights_t[sl]).sum(0))

    ctx.gradients(lambda sl: base + alphas_t[sl] * delta, steps, message="integrated gradients", reduce=accumulate)
    raw = delta[0] * total
    return MethodOutput(reduce_channels(raw, channels), raw=raw, extras={"baseline": baseline})


@register("smoothgrad", name="SmoothGrad", family="gradient", paper="Smilkov et al. 2017",
          needs="gradients", cost="samples × (forward + backward) + 1 forward", stochastic=True,
          passes=lambda p, shape: (p["samples"] + 1, p["samples"]),
          params=(Param("samples", 25, "noisy copies of the clip", 1, 500),
                  Param("noise", 0.15, "noise σ as a fraction of the clip's value range", 0.0, 1.0),
                  Param("variant", "smoothgrad", "mean of gradients, mean of squares, or their variance",
                        choices=("smoothgrad", "smoothgrad_sq", "vargrad")),
                  CHANNELS),
          presets={"fast": {"samples": 10}, "paper": {"samples": 50}},
          description="Averages the gradient over noisy copies of the clip, which removes much of the "
                      "gradient's speckle. SmoothGrad² averages squared gradients, VarGrad their variance.")
def smoothgrad(ctx: Context, samples: int, noise: float, variant: str, channels: str) -> MethodOutput:
    sigma = noise * float(ctx.x.max() - ctx.x.min())
    seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
    first = torch.zeros_like(ctx.x[0])
    second = torch.zeros_like(ctx.x[0])

    def noisy(sl: slice) -> torch.Tensor:  # noise of sample i depends on i only, not on the batch size
        eps = [torch.randn(ctx.x.shape[1:],
                           generator=torch.Generator().manual_seed(seed + i)) for i in range(sl.start, sl.stop)]
        return ctx.x + sigma * torch.stack(eps).to(ctx.x)

    def accumulate(g: torch.Tensor, _xs: torch.Tensor, _sl: slice) -> None:
        first.add_(g.sum(0))
        second.add_((g * g).sum(0))

    ctx.gradients(noisy, samples, message="smoothgrad", reduce=accumulate)
    mean, mean_sq = first / samples, second / samples
    raw = {"smoothgrad": mean, "smoothgrad_sq": mean_sq, "vargrad": mean_sq - mean * mean}[variant]
    return MethodOutput(reduce_channels(raw, channels), raw=raw, extras={"sigma": sigma})
