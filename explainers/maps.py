"""Map utilities written once: ``upsample`` to T×H×W, ``normalise`` to [0, 1], and the Gaussian blur of frames that
the perturbation methods and the metrics share (``blurred``: the clip no model should recognise)."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=256)
def _linear_weights(n_in: int, n_out: int) -> torch.Tensor:
    """The n_in×n_out matrix of 1-D linear interpolation as ``F.interpolate`` does it (``align_corners=False``):
    row i is how input i spreads over the outputs."""
    return F.interpolate(torch.eye(n_in)[None], size=n_out, mode="linear", align_corners=False)[0]


def upsample(volume: torch.Tensor, size: tuple[int, int, int], mode: str = "trilinear") -> torch.Tensor:
    """…×T'×H'×W' maps (any leading dimensions) → …×T×H×W, trilinear by default (``nearest`` repeats time
    slices). Trilinear interpolation is separable: one product per axis with its interpolation matrix, equal to
    ``F.interpolate`` to 2e-7 and 8–13× faster on a CPU (docs/performance.md, upsampling)."""
    v = volume.float()
    lead, (t, h, w) = v.shape[:-3], size
    if mode != "trilinear":
        return F.interpolate(v.reshape(-1, 1, *v.shape[-3:]), size=size, mode=mode).reshape(*lead, t, h, w)
    wt, wh, ww = (_linear_weights(n, m).to(v.device) for n, m in zip(v.shape[-3:], size))
    v = wh.T @ (v @ ww)                                                      # …×T'×H×W
    return (wt.T @ v.reshape(*lead, v.shape[-3], h * w)).reshape(*lead, t, h, w)


def normalise(saliency: torch.Tensor) -> torch.Tensor:
    """Min-max to [0, 1]; a constant map becomes all zeros."""
    s = saliency.float()
    lo, hi = torch.aminmax(s)
    return (s - lo).div_(hi - lo) if hi > lo else torch.zeros_like(s)


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma))) if radius is None else radius
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def blur_frames(x: torch.Tensor, sigma: float, radius: int | None = None, padding: str = "reflect") -> torch.Tensor:
    """Gaussian blur of every frame of B×C×T×H×W (separable); time is not blurred. ``padding`` "reflect"
    (replicate where the kernel is wider than the frame) or "zeros" (TorchRay's: borders fade to 0)."""
    k = gaussian_kernel(sigma, radius).to(x)
    r = (len(k) - 1) // 2
    b, c, t, h, w = x.shape
    f = x.transpose(1, 2).reshape(b * t * c, 1, h, w)
    if padding == "zeros":
        f = F.conv2d(F.conv2d(f, k.view(1, 1, 1, -1), padding=(0, r)), k.view(1, 1, -1, 1), padding=(r, 0))
    else:
        f = F.conv2d(F.pad(f, (r, r, 0, 0), mode="reflect" if r < w else "replicate"), k.view(1, 1, 1, -1))
        f = F.conv2d(F.pad(f, (0, 0, r, r), mode="reflect" if r < h else "replicate"), k.view(1, 1, -1, 1))
    return f.reshape(b, t, c, h, w).transpose(1, 2)


BLUR_SIGMA = 10.0   # px at 112 px: the insertion start, the saliency metric's background and the ``blur`` fill


def blurred(x: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Every frame of B×C×T×H×W blurred with σ = ``sigma`` px at 112 px (scaled with the frame height), kernel ±3σ.
    σ = 10 px leaves both embedded models near chance on their held-out clips (σ = 5 px, as RISE, did not:
    docs/methods.md §20.6)."""
    s = sigma * x.shape[-2] / 112
    return blur_frames(x, sigma=s, radius=max(1, round(3 * s)))


def impute(x: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """B×C×T×H×W clips with the voxels where ``kept`` (B×1×T×H×W, 1 = kept) is 0 filled in linearly from their
    kept neighbours in T×H×W: pull-push over a 2×2×2 pyramid (Gortler et al. 1996), each level's weighted mean of
    what it holds, the coarser level's value where it holds less. Kept voxels are returned unchanged. Hand-written:
    ROAD's exact fill solves a sparse Laplace system per step, several times slower (docs/methods.md §15.8)."""
    num, den = [x * kept], [kept.to(x.dtype)]
    while max(num[-1].shape[2:]) > 1:
        size = [max(1, n // 2) for n in num[-1].shape[2:]]
        num.append(F.adaptive_avg_pool3d(num[-1], size))
        den.append(F.adaptive_avg_pool3d(den[-1], size))
    value = num[-1] / den[-1].clamp(min=1e-12)                   # the coarsest level: the mean of everything kept
    for n, d in zip(reversed(num[:-1]), reversed(den[:-1])):
        coarse = upsample(value, n.shape[2:]).to(value.dtype)
        gap = (1 - d).clamp(min=0)
        value = (n + gap * coarse) / (d + gap).clamp(min=1e-12)
    return torch.where(kept.bool(), x, value)
