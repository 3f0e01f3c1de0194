"""Occlusion-style methods, forward-only and batched: 3-D occlusion (OSA) and RISE-3D, and the fills they share
with AOSA.

Both score the clip with parts of it hidden: occlusion (and AOSA) fill them with ``fill``, by default the same place
blurred (the papers' grey, 0 in normalised space, in the ``paper`` presets), RISE with 0. Occlusion gives each
voxel the mean probability drop over the windows that hide it (Zeiler & Fergus; Captum's ``Occlusion``); RISE,
like AOSA, uses the kept-region weighting of docs/methods.md §13.4: S = (1/N) Σ_i (p_i − p_0) · Ω_i / mean(Ω_i),
where Ω_i is the i-th keep mask. Masks are built batch by batch from a few numbers each (window corners,
low-resolution grids), never all at once.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from explainers.context import Context, MethodOutput
from explainers.device import PRECISIONS
from explainers.maps import BLUR_SIGMA, blurred, upsample
from explainers.registry import Param, few_clips, register

# Forward-only methods take this parameter; ``explain`` hands it to their ``Context`` (it never reaches the method).
PRECISION = Param("precision", "fp32", "arithmetic of the perturbed forward passes: bf16 (autocast, channels-last) "
                                       "is faster on CPUs with bf16 units and GPUs, far slower where it is emulated; "
                                       "maps agree where hiding parts moves the probability, not where it barely "
                                       "does (noise, an unsure model; docs/performance.md, bf16)",
                  choices=PRECISIONS)


def kept_region_map(ctx: Context, masks_of, n: int, message: str, fill: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_i (p_i − p_0) Ω_i / mean(Ω_i) / N over keep masks ``masks_of(slice) -> B×T×H×W``, where p_i scores
    the clip with the hidden voxels set to ``fill`` (default 0, the mean colour); also returns p_i."""
    p0 = ctx.clean_score()
    total = torch.zeros(ctx.shape, device=ctx.x.device)
    current = {}

    def perturbed(sl: slice) -> torch.Tensor:
        keep = current["keep"] = masks_of(sl)[:, None]
        return ctx.x * keep if fill is None else ctx.x * keep + fill * (1 - keep)

    def accumulate(p: torch.Tensor, _xs: torch.Tensor, _sl: slice) -> None:
        keep = current["keep"][:, 0]
        total.add_(kept_region_weights(p - p0, keep))

    scores = ctx.scores(perturbed, n, message=message, reduce=accumulate)
    return total / n, scores


def kept_region_weights(delta: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Σ_i delta_i Ω_i / mean(Ω_i) for B score changes and B×T×H×W keep masks (docs/methods.md §13.4)."""
    weight = delta / keep.flatten(1).float().mean(1).clamp(min=1e-6)
    return torch.einsum("b,bthw->thw", weight.float(), keep.float())


def window_positions(length: int, window: int, stride: int) -> int:
    """How many windows ``window_starts`` places along one axis."""
    window = min(window, length)
    return math.ceil((length - window) / min(stride, window)) + 1


def window_starts(length: int, window: int, stride: int) -> torch.Tensor:
    """Start of every occluder along one axis: whole windows inside the clip, the first at 0 and the last ending at
    the clip's end, spread evenly at most ``stride`` apart (and never further apart than the window, so every
    voxel is hidden at least once)."""
    window = min(window, length)
    n = window_positions(length, window, stride)
    return torch.linspace(0, length - window, n).round().long()


def fill_values(x: torch.Tensor, fill: str) -> torch.Tensor | None:
    """What hidden voxels of the B×C×T×H×W clip ``x`` become (``FILLS``); None for ``zero`` (hiding multiplies)."""
    if fill == "zero":
        return None
    if fill == "clip_mean":
        return x.mean((2, 3, 4), keepdim=True).expand_as(x)
    if fill == "blur":
        return blurred(x)
    if fill == "time_median":
        return x.median(2, keepdim=True).values.expand_as(x)
    if fill == "conditional":
        return neighbourhood_mean(x, 36 * x.shape[-2] // 112 or 1)
    raise ValueError(f"fill must be one of {list(FILLS)}, got {fill!r}")


def neighbourhood_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Conditional-sampling fill: per frame and channel, the mean over a window×window neighbourhood."""
    b, c, t, h, w = x.shape
    f = x.transpose(1, 2).reshape(b * t, c, h, w)
    mean = F.avg_pool2d(f, window, stride=1, padding=window // 2, count_include_pad=False)[..., :h, :w]
    return mean.reshape(b, t, c, h, w).transpose(1, 2)


FILLS = {"zero": "0 in normalised space: the data set's mean colour, a grey cuboid",
         "clip_mean": "the clip's own mean colour",
         "blur": f"the same place blurred (σ = {BLUR_SIGMA:g} px at 112 px)",
         "time_median": "each pixel's median over the clip's frames: the still background where the camera "
                        "does not move",
         "conditional": "the mean of the 36×36 neighbourhood (AOSA's conditional sampling)"}
FILL = Param("fill", "blur", "what hidden voxels become: " + "; ".join(f"{k}: {v}" for k, v in FILLS.items()),
             choices=tuple(FILLS))


def occlusion_passes(p: dict, shape: tuple[int, int, int]) -> tuple[int, int]:
    return math.prod(window_positions(n, k, s) for n, k, s in zip(shape, p["window"], p["strides"])) + 1, 0


@register("occlusion", name="3-D occlusion (OSA)", family="perturbation",
          paper="Zeiler & Fergus 2014; 3-D as [S2] §4.1",
          needs="forward", cost="positions + 1 forwards (846 at the defaults, 148 `fast`)",
          score="prob", passes=occlusion_passes,
          overhead=1.5,              # each batch's occluded copies of the clip
          params=(Param("window", (8, 16, 16), "occluder size T×H×W in frames and pixels", 1, 256),
                  Param("strides", (2, 8, 8), "largest distance between occluder positions T×H×W (at most the "
                                              "window)", 1, 256), FILL, PRECISION),
          presets={"fast": {"strides": (4, 16, 16)}, "paper": {"fill": "zero"}},
          description="Hides one small cuboid of the clip at a time (blurred; grey in the paper preset) and "
                      "records how much the class probability drops. Simple and faithful, but needs one forward "
                      "pass per position.")
def occlusion(ctx: Context, window: tuple[int, int, int], strides: tuple[int, int, int], fill: str) -> MethodOutput:
    """Each voxel's mean probability drop p_0 − p_i over the windows that hide it (docs/methods.md §12, §20.11),
    also as ``raw``. Extras: ``positions`` (windows), ``scores`` (p_i)."""
    window = tuple(min(k, n) for k, n in zip(window, ctx.shape))
    starts = [window_starts(n, k, s) for n, k, s in zip(ctx.shape, window, strides)]
    grid = torch.cartesian_prod(*starts).view(-1, 3)                            # N×3 corners
    ranges = [torch.arange(n) for n in ctx.shape]
    value = fill_values(ctx.x, fill)
    p0 = ctx.clean_score()
    total = torch.zeros(ctx.shape, device=ctx.x.device)
    current = {}

    def hidden(sl: slice) -> torch.Tensor:
        c = grid[sl]
        inside = [(r[None] >= c[:, i:i + 1]) & (r[None] < c[:, i:i + 1] + window[i]) for i, r in enumerate(ranges)]
        hole = current["hole"] = (inside[0][:, :, None, None] & inside[1][:, None, :, None]
                                  & inside[2][:, None, None, :]).to(ctx.x)
        return ctx.x * (1 - hole[:, None]) if value is None else ctx.x + (value - ctx.x) * hole[:, None]

    def accumulate(p: torch.Tensor, _xs: torch.Tensor, _sl: slice) -> None:
        total.add_(torch.einsum("b,bthw->thw", (p0 - p).float(), current["hole"].float()))

    scores = ctx.scores(hidden, len(grid), message="occlusion", reduce=accumulate)
    per_axis = [((r[None] >= s[:, None]) & (r[None] < s[:, None] + k)).sum(0)
                for r, s, k in zip(ranges, starts, window)]                     # windows hiding each index
    count = per_axis[0][:, None, None] * per_axis[1][None, :, None] * per_axis[2][None, None, :]
    drop = total / count.to(total)
    return MethodOutput(drop, raw=drop, extras={"positions": len(grid), "scores": scores})


@register("rise", name="RISE-3D", family="perturbation", paper="Petsiuk et al. 2018, extended to T×H×W",
          needs="forward", cost="masks + 1 forwards", score="prob", stochastic=True,
          passes=lambda p, shape: (p["masks"] + 1, 0),
          overhead=1.4,              # each batch's masks, upsampled and blended
          held=lambda p, shape: p["masks"] * math.prod(g + 1 for g in p["grid"]) + few_clips(p, shape),
          params=(Param("masks", 1000, "number of random masks", 10, 20000),
                  Param("grid", (4, 7, 7), "low-resolution mask grid T×H×W (memory grows with its cells)", 1, 32),
                  Param("keep", 0.5, "probability that a grid cell is kept", 0.05, 0.95), PRECISION),
          presets={"fast": {"masks": 500}, "app": {"masks": 2000}, "paper": {"masks": 4000}},
          description="Scores the clip through many random smooth masks (random low-resolution patterns, "
                      "upsampled with random shifts) and averages the masks weighted by the class probability "
                      "they leave. Model-agnostic; noisier with fewer masks.")
def rise(ctx: Context, masks: int, grid: tuple[int, int, int], keep: float) -> MethodOutput:
    size = ctx.shape
    cell = [math.ceil(n / g) for n, g in zip(size, grid)]
    cells = (torch.rand(masks, 1, *[g + 1 for g in grid], generator=ctx.generator) < keep).float()
    shifts = torch.stack([torch.randint(0, c, (masks,), generator=ctx.generator) for c in cell], 1)
    up = [(g + 1) * c for g, c in zip(grid, cell)]

    def masks_of(sl: slice) -> torch.Tensor:
        smooth = upsample(cells[sl, 0], up)
        out = torch.empty(smooth.shape[0], *size)
        for i, (dt, dh, dw) in enumerate(shifts[sl].tolist()):
            out[i] = smooth[i, dt:dt + size[0], dh:dh + size[1], dw:dw + size[2]]
        return out.to(ctx.x)

    saliency, scores = kept_region_map(ctx, masks_of, masks, "RISE")
    return MethodOutput(saliency, extras={"scores": scores})
