"""SWAG-V: superpixels weighted by average gradients, on 3-D supervoxels ([S4]; docs/methods.md §11, §20.5).

No public code exists, so this follows the paper and the project decisions: a guided-backprop map (logit
score), the per-voxel map M = max over colour channels of |G| scaled to [0, 1], 3-D SLIC supervoxels over the
whole T×H×W clip (scikit-image's ``slic``), and every supervoxel painted with the mean of M inside it. The
three variants differ only in what SLIC clusters on: the frames' Lab colours (I), the map (G), or both (I+G).
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2lab
from skimage.segmentation import slic

from explainers.context import Context, MethodOutput
from explainers.gradients import guided_relus
from explainers.maps import normalise
from explainers.registry import Param, one_pair, register

LAB_RANGE = 100.0    # the map is scaled to Lab's lightness range so that w_c and w_g weigh comparable units


def supervoxels(features: np.ndarray, segments: int) -> np.ndarray:
    """3-D SLIC on T×H×W×F features already divided by their weights (compactness 1: distance² =
    Σ feature² + (space-time distance / grid step)²). Returns int32 labels T×H×W, from 0."""
    labels = slic(features.astype(np.float64), n_segments=segments, compactness=1.0, channel_axis=-1,
                  convert2lab=False, start_label=0, enforce_connectivity=True)
    return labels.astype(np.int32)


def segment_means(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Paint every segment with the mean of ``values`` inside it (T×H×W in, T×H×W out)."""
    flat = labels.flatten().long()
    n = int(flat.max()) + 1
    sums = torch.zeros(n, dtype=values.dtype).index_add_(0, flat, values.flatten())
    counts = torch.bincount(flat, minlength=n).clamp(min=1).to(values.dtype)
    return (sums / counts)[flat].view_as(values)


def _swag(ctx: Context, features: str, segments: int, w_c: float, w_g: float) -> MethodOutput:
    with guided_relus(ctx.model):
        g = ctx.gradients(lambda sl: ctx.x, 1, message="guided backprop")[0]
    ctx.report(0.5, "supervoxels")
    m = normalise(g.abs().amax(0)).cpu()                                   # T×H×W in [0, 1]
    parts = []
    if features in ("image", "both"):
        parts.append(rgb2lab(ctx.rgb().numpy()) / w_c)                      # T×H×W×3
    if features in ("map", "both"):
        parts.append(m.numpy()[..., None] * LAB_RANGE / w_g)
    labels = torch.from_numpy(supervoxels(np.concatenate(parts, -1), segments))
    ctx.report(1.0, "supervoxels")
    return MethodOutput(segment_means(m, labels), raw=g,
                        extras={"supervoxels": labels, "segments": int(labels.max()) + 1})


def _params(w_c: float) -> tuple[Param, ...]:
    return (Param("segments", 120, "supervoxels requested for the whole clip (SLIC may return a few more or less)",
                  4, 2000),
            Param("w_c", w_c, "colour weight: higher = colour matters less in the supervoxels", 0.1, 1000.0),
            Param("w_g", 9.0, "gradient weight: higher = the gradient map matters less in the supervoxels", 0.1,
                  1000.0))


_COMMON = dict(family="gradient", paper="[S4] Hartley et al. (SWAG-V)", needs="gradients",
               cost="1 forward + 1 backward + one 3-D SLIC on the CPU", passes=one_pair)

@register("swag_v_i", name="SWAG-V (image supervoxels)", params=_params(10.0), **_COMMON,
          description="Guided-backprop gradients averaged inside supervoxels: 3-D regions of similar colour that "
                      "span several frames. The map follows object boundaries and is free of pixel noise.")
def swag_v_i(ctx: Context, segments: int, w_c: float, w_g: float) -> MethodOutput:
    """SWAG-V_I: supervoxels of the frames' Lab colours. Extras: ``supervoxels`` (T×H×W labels)."""
    return _swag(ctx, "image", segments, w_c, w_g)


@register("swag_v_g", name="SWAG-V (gradient supervoxels)", params=_params(20.0), **_COMMON,
          description="Like SWAG-V (image), but the supervoxels group voxels of similar gradient strength "
                      "instead of similar colour.")
def swag_v_g(ctx: Context, segments: int, w_c: float, w_g: float) -> MethodOutput:
    """SWAG-V_G: supervoxels of the guided-backprop map alone."""
    return _swag(ctx, "map", segments, w_c, w_g)


@register("swag_v_ig", name="SWAG-V (image + gradient supervoxels)", params=_params(20.0), **_COMMON,
          description="SWAG-V whose supervoxels use colour and gradient strength together (the paper's best "
                      "variant, w_c = 20, w_g = 9).")
def swag_v_ig(ctx: Context, segments: int, w_c: float, w_g: float) -> MethodOutput:
    """SWAG-V_I+G: supervoxels of [Lab / w_c, map / w_g] ([S4] §4.4's final setting)."""
    return _swag(ctx, "both", segments, w_c, w_g)
