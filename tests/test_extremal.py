"""Extremal perturbations (EP-3D family, STEP): the building blocks against their definitions, and the
optimiser on a model whose only evidence is one textured cuboid."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from explainers import explain, extremal
from explainers.extremal import (
    BlurPyramid,
    MaskGenerator,
    _SmoothMax,
    area_loss,
    ellipsoid,
    key_region_loss,
    smooth_time,
)
from explainers.metrics import spearman


@pytest.mark.parametrize("size, step, sigma, padding, radius, seeds, out, crop", [
    (112, 7, 11, 5, 3, 16, 134, 11), (224, 7, 21, 7, 4, 32, 260, 21), (224, 14, 23, 5, 3, 16, 267, 23)])
def test_mask_generator_sizes_match_the_spec_table(size, step, sigma, padding, radius, seeds, out, crop):
    g = MaskGenerator((size, size), step, sigma)
    assert (g.padding, g.radius, g.seed_shape, g.out_shape, g.crop) == (padding, radius, (seeds,) * 2, (out,) * 2, crop)
    cropped, padded = g(torch.rand(2, seeds, seeds))
    assert cropped.shape == (2, size, size) and padded.shape == (2, out, out)


def _bump_by_hand(g: MaskGenerator, cell: tuple[int, int]) -> np.ndarray:
    """Direct evaluation of docs/methods.md §1.2 for seeds that are 1 at ``cell`` and 0 elsewhere."""
    s, c = g.step, 2 * g.radius + 1
    uy, ux = np.meshgrid(np.arange(g.out_shape[0]), np.arange(g.out_shape[1]), indexing="ij")
    values = []
    for ky in range(c):
        for kx in range(c):
            iy, ix = uy // s + ky - g.padding, ux // s + kx - g.padding
            dist = np.hypot(uy - (g.sigma + s * iy), ux - (g.sigma + s * ix)) / g.sigma
            seed = (iy == cell[0]) & (ix == cell[1])
            values.append(np.exp(-2 * np.maximum(dist - 0.5, 0) ** 2) * seed)
    v = np.stack(values)
    e = np.exp(20 * v)
    return np.clip((v * e).sum(0) / e.sum(0), 0, 1)


def test_single_seed_gives_the_smooth_max_bump():
    g = MaskGenerator((112, 112), 7, 11)
    seeds = torch.zeros(1, 16, 16)
    seeds[0, 6, 9] = 1
    _, padded = g(seeds)
    expected = _bump_by_hand(g, (6, 9))
    assert np.abs(padded[0].numpy() - expected).max() < 1e-5
    # flat top of radius σ/2 around the seed's pixel, half height near 1.09σ, nothing beyond 3σ
    cy, cx = g.sigma + 7 * 6, g.sigma + 7 * 9
    yy, xx = np.meshgrid(np.arange(134), np.arange(134), indexing="ij")
    d = np.hypot(yy - cy, xx - cx)
    p = padded[0].numpy()
    assert p[d <= 0.5 * 11].min() > 0.999
    assert abs(np.sqrt((p > 0.5).sum() / math.pi) - 1.09 * 11) < 1.5
    assert p[d > 3 * 11].max() < 1e-3


@pytest.mark.parametrize("rows_per_chunk", [2, 64])
def test_smooth_max_gradient_matches_autograd(monkeypatch, rows_per_chunk):
    torch.manual_seed(0)
    g = MaskGenerator((28, 28), 7, 5.0)
    u = torch.rand(5, g.weight.shape[1], dtype=torch.float64, requires_grad=True)
    w = g.weight.double()
    monkeypatch.setattr(extremal, "CHUNK_BUDGET", rows_per_chunk * w.numel())   # 2: chunks of 2, 2 and 1 rows
    assert torch.autograd.gradcheck(lambda t: _SmoothMax.apply(t, w, 20.0), (u,))
    v = w[None] * u[:, None]                                              # rows × phases × candidates
    reference = (v * torch.softmax(20 * v, 2)).sum(2)
    assert torch.allclose(_SmoothMax.apply(u, w, 20.0), reference)


def test_blur_pyramid_interpolates_between_levels():
    x = torch.randn(1, 3, 2, 16, 16)
    p = BlurPyramid(x, levels=8, max_blur=4.0)
    assert torch.equal(p.apply(torch.ones(1, 2, 16, 16)), x)
    assert torch.allclose(p.apply(torch.zeros(1, 2, 16, 16))[0], p.levels[0])
    half = p.apply(torch.full((1, 2, 16, 16), 0.5 / 7 + 3 / 7))[0]  # halfway between levels 3 and 4
    assert torch.allclose(half, (p.levels[3] + p.levels[4]) / 2, atol=1e-6)


def test_blur_pyramid_matches_the_hat_function_sum_and_its_gradient():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 2, 16, 16, dtype=torch.float64)
    p = BlurPyramid(x, levels=8, max_blur=4.0)
    mask = torch.rand(2, 2, 16, 16, dtype=torch.float64, requires_grad=True)
    position = mask[:, None] * 7
    reference = sum((1 - (position - level).abs()).clamp(min=0) * p.levels[level] for level in range(8))
    weight = torch.randn_like(reference)
    grad, = torch.autograd.grad((p.apply(mask) * weight).sum(), mask)
    expected, = torch.autograd.grad((reference * weight).sum(), mask)
    assert torch.allclose(p.apply(mask), reference) and torch.allclose(grad, expected)


def _time_kernel(delta_t: int) -> torch.Tensor:
    """[S1] Eq. 12's taps k(u) = exp(−u²/(0.6·Δt)), u = −Δt … Δt, unnormalised."""
    return torch.exp(-torch.arange(-delta_t, delta_t + 1.0) ** 2 / (0.6 * delta_t))


def test_temporal_smoothing_kernel_and_ends():
    seeds = torch.zeros(1, 9, 1, 1)
    seeds[0, 4] = 1
    out = smooth_time(seeds, 2)[0, :, 0, 0]
    k = _time_kernel(2)
    assert torch.allclose(out[2:7], k / k.sum()) and out[:2].abs().max() == 0
    assert torch.allclose(smooth_time(torch.ones(2, 5, 3, 3), 3), torch.ones(2, 5, 3, 3))  # renormalised ends


def test_virtual_ends_charge_a_run_at_a_clip_end_like_one_inside():
    """Renormalised ends make kept frames that touch a clip end cheaper for the area loss than the same frames
    inside the clip (one soft temporal edge instead of two); virtual frames beyond the ends charge both alike."""
    seeds = torch.zeros(1, 9, 1, 1)
    seeds[0, 0] = 1
    out = smooth_time(seeds, 2, "virtual")[0, :, 0, 0]
    k = _time_kernel(2)
    assert out.shape == (13,) and torch.allclose(out[:5], k / k.sum()) and out[5:].abs().max() == 0

    gen = MaskGenerator((56, 56), 7, 11.0)

    def cost(start: int, ends: str) -> float:
        seeds = torch.zeros(1, 8, *gen.seed_shape)
        seeds[:, start:start + 3, 2:6, 2:6] = 1                       # a square kept in 3 consecutive frames
        keep = gen(seeds[0])[1].sum().floor()[None]
        padded = gen(smooth_time(seeds, 1, ends)[0])[1][None]
        return float(area_loss(padded, keep, False, torch.arange(padded.numel()))) * padded.shape[1]

    assert cost(0, "renormalised") < 0.95 * cost(3, "renormalised")
    assert cost(0, "virtual") == pytest.approx(cost(3, "virtual"), rel=1e-5)
    assert cost(3, "virtual") == pytest.approx(cost(3, "renormalised"), rel=1e-5)


def test_key_region_loss_counts_from_the_spec():
    kernel = ellipsoid((7, 11, 11))
    assert int(kernel.sum()) == 311                         # docs/methods.md §5: 311 ones, continuous volume 443
    perm = torch.arange(144)
    keep = torch.tensor([65 * 443.0])                        # k = 65 windows
    masks = torch.zeros(1, 7, 134, 134)                      # T = T_K: one window in time, 12×12 in space
    for window in range(65):
        i, j = divmod(window, 12)
        masks[0, :, 11 * i:11 * i + 11, 11 * j:11 * j + 11] = kernel
    assert key_region_loss(masks, keep, kernel, perm).item() == pytest.approx(0.0, abs=1e-6)
    assert key_region_loss(torch.zeros_like(masks), keep, kernel, perm).item() == pytest.approx(1.0)
    assert key_region_loss(torch.ones_like(masks), keep, kernel, perm).item() == pytest.approx(1.0)


# ------------------------------------------------------------------------- the optimiser on a known answer
T, H = 8, 56
BOX = (slice(2, 6), slice(16, 32), slice(20, 36))            # 4×16×16 = 4.1 % of the clip


class TexturedCuboid(nn.Module):
    """Class 0 rises with the texture energy inside BOX (blurring destroys it); class 1 is constant."""

    def forward(self, x):
        energy = x[:, :, BOX[0], BOX[1], BOX[2]].pow(2).mean((1, 2, 3, 4))
        return torch.stack([8 * energy, torch.full_like(energy, 4.0)], 1)


def _clip() -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    checker = ((i + j) % 2 * 2 - 1).float()
    x = (0.3 * checker).expand(1, 3, T, H, H).clone()
    x[:, :, BOX[0], BOX[1], BOX[2]] = checker[BOX[1], BOX[2]]
    return x


@pytest.fixture(scope="module")
def runs():
    x, model = _clip(), TexturedCuboid()
    return {m: explain(model, x, m, target=0, iterations=300, areas=(0.08,), **extra)
            for m, extra in (("ep3d", {}), ("ep3d_evenly", {}), ("step", {"key_frames": 3}))}


def test_ep3d_keeps_the_requested_area_and_covers_the_cuboid(runs):
    e = runs["ep3d"]
    mask = e.extras["masks"][0]
    assert mask.shape == (T, H, H)
    assert 0.8 * 0.08 <= e.extras["preserved"][0] <= 1.2 * 0.08
    assert mask[BOX].mean() > 0.9
    assert e.extras["probs"][0] > 0.8 > torch.softmax(torch.tensor([0.0, 4.0]), 0)[0]  # kept what mattered
    assert e.saliency[BOX].mean() > 3 * e.saliency.mean()
    assert e.forward_passes == 1 + 300 + 1 and e.backward_passes == 300
    assert e.extras["history"].shape == (300, 1)


def test_ep3d_evenly_spreads_the_area_over_frames(runs):
    per_frame = runs["ep3d_evenly"].extras["masks"][0].mean((1, 2))
    volume = runs["ep3d"].extras["masks"][0].mean((1, 2))
    assert per_frame.min() > 0.08 / 2 and per_frame.max() / per_frame.min() < 2
    assert volume.max() > 4 * volume.min()                  # EP-3D puts most of it into the cuboid's frames


def _outside_best_windows(mask: torch.Tensor, kernel: torch.Tensor, k: int) -> float:
    """Share of the mask's mass outside its k best key-region windows."""
    resp = torch.nn.functional.conv3d(mask[None, None], kernel[None, None], stride=(1, *kernel.shape[1:]))
    return 1 - float(resp.flatten().topk(k).values.sum() / (mask.sum() * kernel.mean() * kernel.shape[0]))


def test_step_is_more_compact_than_ep3d(runs):
    ep, step = runs["ep3d"].extras["masks"][0], runs["step"].extras["masks"][0]
    kernel = ellipsoid((3, 7, 7))
    components = [ndimage.label((m > 0.5).numpy())[1] for m in (ep, step)]
    assert components[1] <= components[0]
    assert _outside_best_windows(step, kernel, 14) < _outside_best_windows(ep, kernel, 14)
    assert step[BOX].mean() > 0.8


class MixedTexturedCuboid(TexturedCuboid):
    """The same evidence read through an identity 1×1×1 convolution, which bf16 autocast runs in bf16."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Conv3d(3, 3, 1, bias=False)
        self.mix.weight.data = torch.eye(3).view(3, 3, 1, 1, 1)

    def forward(self, x):
        return super().forward(self.mix(x))


def test_bf16_passes_keep_the_answer(runs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # "bf16 is emulated" on CPUs without bf16 units
        e = explain(MixedTexturedCuboid(), _clip(), "ep3d", target=0, iterations=300, areas=(0.08,), precision="bf16")
    assert e.params["precision"] == "bf16"
    assert 0.8 * 0.08 <= e.extras["preserved"][0] <= 1.2 * 0.08
    assert e.extras["masks"][0][BOX].mean() > 0.9
    assert spearman(e.saliency, runs["ep3d"].saliency) > 0.9
    assert e.forward_passes == 1 + 300 + 1 and e.backward_passes == 300


def test_unsync_optimises_each_frame_alone():
    x, model = _clip(), TexturedCuboid()
    e = explain(model, x, "ep_unsync", target=0, iterations=40, areas=(0.1, 0.2), max_batch=5)
    assert e.extras["masks"].shape == (2, T, H, H)
    assert e.forward_passes == 1 + 40 * 2 * T + 2 * T and e.backward_passes == 40 * 2 * T
    assert e.extras["history"].shape == (40, 2)


@pytest.mark.parametrize("ends", ["renormalised", "virtual"])
def test_temporal_gauss_and_seed_reproducibility(ends):
    x, model = _clip(), TexturedCuboid()
    a = explain(model, x, "ep3d_temporal_gauss", target=0, iterations=30, areas=(0.1,), delta_t=2, ends=ends, seed=3)
    b = explain(model, x, "ep3d_temporal_gauss", target=0, iterations=30, areas=(0.1,), delta_t=2, ends=ends, seed=3)
    assert torch.equal(a.saliency, b.saliency)
    frames = a.extras["masks"][0].mean((1, 2))
    inner = frames if ends == "renormalised" else frames[1:-1]
    assert (inner[1:] - inner[:-1]).abs().max() < 0.1          # smooth in time
    k = _time_kernel(2)
    end_cap = 1.0 if ends == "renormalised" else float(k[2:].sum() / k.sum())   # virtual seeds are 0
    assert frames[[0, -1]].max() <= end_cap + 1e-6
