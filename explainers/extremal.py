"""Extremal perturbations on video: EP-3D and its variants, and STEP ([S0] §3–4, [S1] §3.2; docs/methods.md §1–6,
§20.2).

Written by hand: TorchRay's extremal perturbation is image-only and the papers' video code pins torch 1.2 and
has no licence. One optimiser (``extremal_masks``) serves every variant; each registered method is a
configuration of it:

* ``ep3d``                — one area constraint over the whole T×H×W volume;
* ``ep3d_evenly``         — the same area in every frame ("Extm. Ptb. Sync");
* ``ep_unsync``           — each frame optimised alone with all other frames fully blurred, T problems in a batch;
* ``ep3d_temporal_gauss`` — the seed masks smoothed along time (Δt) inside every iteration;
* ``step``                — EP-3D plus the ellipsoid key-region loss L_K from iteration 100.

The building blocks follow TorchRay's image version: a blur pyramid (``BlurPyramid``), per-frame smooth-max
upsampling of low-resolution seed masks (``MaskGenerator``) and a sorted-mask area regulariser whose weight λ
grows every iteration. All areas (and, for Unsync, all frames) of one clip are optimised together, in batches
of at most ``max_batch`` clips whose gradients accumulate before each SGD step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from explainers.context import Context, MethodOutput
from explainers.device import PRECISIONS
from explainers.maps import blur_frames
from explainers.registry import Param, few_clips, register

LEVELS = 8               # blur pyramid levels of an EP run

LAMBDA0, LAMBDA_GROWTH = 300.0, 1.0008668     # area regulariser weight and its growth per iteration
CORE_WEIGHT, CORE_START = 300.0, 100          # STEP: L_K weight and the iteration it switches on
MOMENTUM = 0.9


CHUNK_BUDGET = 1 << 19                        # elements of the rows × phases × candidates tensor held at once
GPU_CHUNK_BUDGET = 1 << 25                    # on a GPU cache size does not matter, fewer launches do
LOG2_E = 1.0 / math.log(2.0)                  # exp(x) = exp2(x·log2 e); exp2 is the cheaper one on CPU


def _row_chunks(u: torch.Tensor, inner: torch.Size):
    """(rows, buffer) pairs covering u's rows in chunks under the budget; one r×inner buffer is reused."""
    budget = GPU_CHUNK_BUDGET if u.is_cuda else CHUNK_BUDGET
    size = min(len(u), max(1, budget // math.prod(inner)))
    buf = u.new_empty(size, *inner)
    for a in range(0, len(u), size):
        rows = slice(a, min(a + size, len(u)))
        yield rows, buf[:rows.stop - a]


class _SmoothMax(torch.autograd.Function):
    """o_q = Σ_k v_k softmax(c·v)_k with v_k = w_qk · u_k, for every row of candidates u and every sub-pixel
    phase q. Computed in chunks of rows small enough to stay in cache, so the rows × phases × candidates
    tensor never exists at once (backward recomputes it chunk by chunk). Each chunk is laid out so that its
    reductions are batched (1×n)·(n×m) products, the fast shape of ``bmm`` on CPU.

    u: R×K candidate seed values (the K = (2r+1)² neighbours of a low-resolution position, in [0, 1]);
    weight: Q×K kernel weight of each candidate for each phase (Q = step²). Returns R×Q.
    """

    @staticmethod
    def forward(ctx, u, weight, coldness):
        wt = weight.t().contiguous()                                       # K×Q
        cwt = wt * (coldness * LOG2_E)
        num, den = u.new_empty(len(u), 1, len(weight)), u.new_empty(len(u), 1, len(weight))
        for sl, buf in _row_chunks(u, wt.shape):
            uc = u[sl, None, :]                                            # r×1×K
            e = torch.mul(cwt, uc.transpose(1, 2), out=buf).exp2_()       # r×K×Q, v ≤ 1: no overflow
            torch.sum(e, 1, keepdim=True, out=den[sl])
            torch.bmm(uc, e.mul_(wt), out=num[sl])
        out = num.div_(den)[:, 0]
        ctx.save_for_backward(u, weight, out, den[:, 0])
        ctx.coldness = coldness
        return out

    @staticmethod
    def backward(ctx, grad):
        u, weight, out, den = ctx.saved_tensors
        c = ctx.coldness
        # ∂o_q/∂u_k = w_qk·e_qk/den_q · (1 + c·(w_qk·u_k − o_q)), so with g_q = grad_q/den_q:
        # ∂L/∂u_k = Σ_q (w·e)_qk·g_q·(1 − c·o_q) + u_k · Σ_q (w²·e)_qk·c·g_q
        g = grad / den
        a, b = (1 - c * out).mul_(g)[:, None], (c * g)[:, None]            # R×1×Q
        cw = weight * (c * LOG2_E)
        gu = torch.empty_like(u)
        for sl, buf in _row_chunks(u, weight.shape):
            uc = u[sl]
            e = torch.mul(cw, uc[:, None, :], out=buf).exp2_().mul_(weight)              # r×Q×K
            first = torch.bmm(a[sl], e)
            gu[sl] = torch.addcmul(first, uc[:, None], torch.bmm(b[sl], e.mul_(weight)))[:, 0]
        return gu, None, None


class MaskGenerator:
    """Smooth masks from low-resolution seeds (TorchRay's ``MaskGenerator``, docs/methods.md §1.2).

    Each seed cell i sits at pixel ``step·i`` of the frame; an output pixel takes the smooth maximum
    (softmax-weighted mean, temperature ``coldness``) of its (2r+1)² neighbouring seeds, each multiplied by the
    kernel k(z) = exp(−2·max(z − ½, 0)²) of its distance z in units of ``sigma``: a flat top of radius σ/2 and
    a Gaussian fall-off. ``__call__`` maps N×h̄×w̄ seeds to (N×H×W masks, N×H'×W' padded masks); the padded
    ones (a margin of σ around the frame) are what the area regulariser measures.
    """

    def __init__(self, shape: tuple[int, int], step: int = 7, sigma: float = 11.0, coldness: float = 20.0):
        self.shape, self.step, self.sigma, self.coldness = tuple(shape), step, sigma, coldness
        self.padding = 1 + math.ceil(2 * sigma / step)
        self.radius = 1 + math.ceil(sigma / step)
        self.crop = round(sigma)
        self.seed_shape = tuple(self._seeds(n) for n in shape)
        self.mid = tuple(n + 2 * self.padding - 2 * self.radius for n in self.seed_shape)
        self.out_shape = tuple(step * m - step + 1 for m in self.mid)
        phase = torch.arange(step, dtype=torch.float32)
        cand = torch.arange(2 * self.radius + 1, dtype=torch.float32)
        d = phase[:, None] - sigma - step * (cand[None, :] - self.padding)   # phase × candidate, one axis
        dist = (d[:, None, :, None] ** 2 + d[None, :, None, :] ** 2).sqrt()    # qy × qx × ky × kx
        z = dist / sigma
        self.weight = torch.exp(-2 * (z - 0.5).clamp(min=0) ** 2).reshape(step * step, -1)

    def _seeds(self, n: int) -> int:
        """TorchRay's ⌈n/step⌉ seeds along an axis of n pixels, plus one where rounding would leave the padded
        mask shorter than margin + n (small frames)."""
        seeds = math.ceil(n / self.step)
        while self.step * (seeds + 2 * self.padding - 2 * self.radius - 1) + 1 < self.crop + n:
            seeds += 1
        return seeds

    def __call__(self, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.candidates(seeds)
        return self.assemble(_SmoothMax.apply(u, self.weight.to(u), self.coldness), len(seeds))

    def candidates(self, seeds: torch.Tensor) -> torch.Tensor:
        """N×h̄×w̄ seeds → (N·mid_h·mid_w)×K: the K = (2r+1)² neighbouring seeds of every low-resolution position."""
        u = F.unfold(seeds[:, None], 2 * self.radius + 1, padding=self.padding)   # N×K×(mid_h·mid_w)
        return u.transpose(1, 2).reshape(-1, u.shape[1])

    def assemble(self, o: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(N·mid_h·mid_w)×step² smooth maxima → (N×H×W masks, N×H'×W' padded masks): each position's step×step
        phases tiled into the frame, cropped and clamped to [0, 1]."""
        (mh, mw), s, c = self.mid, self.step, self.crop
        o = o.view(n, mh, mw, s, s).permute(0, 1, 3, 2, 4).reshape(n, mh * s, mw * s)
        padded = o[:, :self.out_shape[0], :self.out_shape[1]].clamp(0, 1)
        return padded[:, c:c + self.shape[0], c:c + self.shape[1]], padded


class BlurPyramid:
    """The clip blurred per frame at ``levels`` strengths, σ_l = max_blur·(1 − l/(L−1)) (level L−1 is the clip
    itself), zero padding as TorchRay's ``imsmooth``. ``apply(mask)`` interpolates linearly between levels at
    mask·(L−1): mask 1 keeps a voxel, 0 blurs it fully (docs/methods.md §1.1)."""

    def __init__(self, x: torch.Tensor, levels: int = 8, max_blur: float = 20.0):
        sigmas = [max_blur * (1 - level / (levels - 1)) for level in range(levels)]
        stack = torch.stack([blur_frames(x, s, radius=math.ceil(4 * s), padding="zeros")[0] if s > 0 else x[0]
                             for s in sigmas])                           # L×C×T×H×W
        self._base = stack.flatten(2).transpose(0, 1).contiguous()      # C×L×V, V = T·H·W voxels
        self._rise = self._base.diff(dim=1)                               # C×(L−1)×V: level l+1 − level l
        self.levels = self._base.view(len(x[0]), levels, *x.shape[2:]).transpose(0, 1)   # L×C×T×H×W view

    def apply(self, mask: torch.Tensor) -> torch.Tensor:
        """N×T×H×W masks in [0, 1] → N×C×T×H×W perturbed clips (differentiable in the mask).

        Each voxel reads two values: its nearest level, and the rise to the next level from the one below it
        (instead of summing every level's hat-function weight; docs/performance.md, EP building blocks).
        Anchoring at the nearest level keeps a voxel with mask 1 (or 0) exactly equal to the clip (or the most
        blurred level)."""
        n, c, levels = len(mask), *self._base.shape[:2]
        position = mask.reshape(n, 1, 1, -1) * (levels - 1)
        nearest = position.detach().round().clamp_(0, levels - 1)
        below = position.detach().floor().clamp_(0, levels - 2).long().expand(n, c, 1, -1)
        base = torch.gather(self._base.expand(n, -1, -1, -1), 2, nearest.long().expand(n, c, 1, -1))
        rise = torch.gather(self._rise.expand(n, -1, -1, -1), 2, below)
        return torch.addcmul(base, position - nearest, rise).view(n, c, *mask.shape[1:])


def area_loss(padded: torch.Tensor, keep: torch.Tensor, per_frame: bool, perm: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the sorted padded mask values and a template whose last ``keep`` values
    are 1 and the others 0, over the whole volume or (``per_frame``) each frame separately; P×F×H'×W' masks
    and P counts → P losses. ``perm`` shuffles the values first so that ties (all ones at the start) are
    broken at random.

    Computed without sorting: Σ(sorted − template)² = Σv² − 2·(sum of the ``keep`` largest) + keep, with an
    unsorted ``topk`` per problem (its own count) in place of a full sort of the padded clip's voxels."""
    values = padded.flatten(2) if per_frame else padded.flatten(1)[:, None]
    values = torch.gather(values, -1, perm.expand_as(values))           # values[..., perm] has a slow backward
    n = values.shape[-1]
    keep = keep.clamp(max=n)
    largest = torch.stack([v.topk(int(k), -1, sorted=False).values.sum(-1) for v, k in zip(values, keep.tolist())])
    return ((values ** 2).sum(-1) - 2 * largest + keep[:, None]).div(n).mean(-1)


def ellipsoid(size: tuple[int, int, int], shape: str = "ellipsoid") -> torch.Tensor:
    """Binary T×H×W kernel: voxels with (2t/(T−1)−1)² + (2i/(H−1)−1)² + (2j/(W−1)−1)² ≤ 1 (no time term for
    a cylinder)."""
    axes = [torch.linspace(-1, 1, n) if n > 1 else torch.zeros(1) for n in size]
    t, i, j = torch.meshgrid(*axes, indexing="ij")
    r = i ** 2 + j ** 2 + (t ** 2 if shape == "ellipsoid" else 0)
    return (r <= 1 + 1e-6).float()


def key_region_loss(padded: torch.Tensor, keep: torch.Tensor, kernel: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """STEP's L_K ([S1] Eq. 7–9, docs/methods.md §5): correlate the padded masks P×T×H'×W' with the ellipsoid (stride
    1 in time, its own size in space), sort the normalised responses, and pull the top k to 1 and the rest to
    0, where k = ⌈kept voxels / continuous ellipsoid volume⌉. Returns P losses."""
    kt, kh, kw = kernel.shape
    resp = F.conv3d(padded[:, None], kernel[None, None].to(padded), stride=(1, kh, kw)).flatten(1)
    resp = resp[:, perm].sort(-1, descending=True).values / kernel.sum()
    n = resp.shape[1]
    k = (keep / math.floor(kt * kh * kw * math.pi / 6)).ceil().clamp(1, n)
    top = torch.arange(n, device=resp.device)[None] < k[:, None]
    rest = (~top).sum(1).clamp(min=1)
    return ((resp - 1) ** 2 * top).sum(1) / top.sum(1) + (resp ** 2 * ~top).sum(1) / rest


def smooth_time(seeds: torch.Tensor, delta_t: int, ends: str = "renormalised") -> torch.Tensor:
    """Seeds P×T×h×w smoothed along T with k(u) = exp(−u²/(0.6·Δt)), |u| ≤ Δt ([S1] Eq. 12).

    ``ends="renormalised"`` (docs/methods.md §20.2) divides by the kernel weight inside the clip and returns T frames.
    ``"virtual"`` returns the full convolution, T + 2Δt frames, whose first and last Δt frames lie outside the
    clip and hold what the kernel spreads past its ends."""
    u = torch.arange(-delta_t, delta_t + 1, dtype=seeds.dtype, device=seeds.device)
    k = torch.exp(-u ** 2 / (0.6 * delta_t))[None, None]
    p, t, h, w = seeds.shape
    flat = seeds.permute(0, 2, 3, 1).reshape(-1, 1, t)
    if ends == "virtual":
        out = F.conv1d(flat, k / k.sum(), padding=2 * delta_t)
    else:
        norm = F.conv1d(torch.ones(1, 1, t, dtype=seeds.dtype, device=seeds.device), k, padding=delta_t)
        out = F.conv1d(flat, k, padding=delta_t) / norm
    return out.reshape(p, h, w, -1).permute(0, 3, 1, 2)


def extremal_masks(ctx: Context, areas: tuple[float, ...], iterations: int, per_frame: bool = False,
                   unsync: bool = False, delta_t: int = 0, ends: str = "renormalised", key_frames: int = 0,
                   key_shape: str = "ellipsoid", step: int = 7, sigma: float = 11.0, max_blur: float = 20.0,
                   levels: int = LEVELS, lr: float = 0.05) -> MethodOutput:
    """Optimise one smooth preservation mask per area (docs/methods.md §2–§6, §20.2) and return their blurred sum.

    Minimises −score(blur-perturbed clip) + λ·area loss (+ 300·L_K from iteration 100 when ``key_frames``)
    with SGD (momentum 0.9, dampening 0.9) on per-frame seed masks initialised to 1 and clamped to [0, 1];
    λ = 300 grows ×1.0008668 per iteration. ``step``, ``sigma`` and the blur are in pixels at 112 px and scale
    with the frame size. With ``delta_t`` and ``ends="virtual"`` the regularisers also count the Δt virtual
    frames on each side of the clip that ``smooth_time`` returns; only the clip's frames perturb it. Extras: the
    per-area masks (A×T×H×W), the preserved fraction (voxels with mask ≥ ½) and final target probability of each
    area's perturbed clip, and the score of every iteration (``history``, iterations × A).
    """
    t, h, w = ctx.shape
    scale = min(h, w) / 112
    gen = MaskGenerator((h, w), max(2, round(step * scale)), sigma * scale)
    pyramid = BlurPyramid(ctx.x, levels, max_blur * scale)
    area_t = torch.tensor(areas, dtype=torch.float32, device=ctx.x.device)
    n_areas = len(areas)
    if unsync:      # problem (a, τ): frame τ alone, all other frames fully blurred
        frames = torch.arange(t, device=ctx.x.device).repeat(n_areas)
        area_t = area_t.repeat_interleave(t)
    problems, seed_frames = len(area_t), 1 if unsync else t
    virtual = delta_t if ends == "virtual" else 0                 # frames beyond each end of the clip
    mask_frames = seed_frames + 2 * virtual
    area_scale = mask_frames / seed_frames                        # area_loss is a mean over all mask frames
    # The template keeps area·(voxels of the clip), counted on the padded masks: TorchRay counts area·(padded
    # voxels), which keeps (H'/H)² ≈ 1.43× the requested share of a 112-px clip (docs/methods.md §16.6).
    keep = (area_t * h * w * (1 if per_frame or unsync else seed_frames)).floor()
    seeds = torch.ones(problems, seed_frames, *gen.seed_shape, device=ctx.x.device, requires_grad=True)
    opt = torch.optim.SGD([seeds], lr=lr, momentum=MOMENTUM, dampening=MOMENTUM)
    oh, ow = gen.out_shape
    perm = torch.randperm(oh * ow * (1 if per_frame else mask_frames), generator=ctx.generator).to(ctx.x.device)
    kernel = None
    if key_frames:
        side = max(3, round(11 * scale) | 1)
        kernel = ellipsoid((min(key_frames, t), side, side), key_shape)
        n_resp = (t - kernel.shape[0] + 1) * (oh // kernel.shape[1]) * (ow // kernel.shape[2])
        core_perm = torch.randperm(n_resp, generator=ctx.generator).to(ctx.x.device)

    def masks(rows: slice, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = smooth_time(s, delta_t, ends) if delta_t else s
        cropped, padded = gen(s.flatten(0, 1))
        cropped, padded = cropped.view(len(s), -1, h, w), padded.view(len(s), -1, oh, ow)
        cropped = cropped[:, virtual:virtual + seed_frames]                 # the clip's frames
        if unsync:
            cropped = F.one_hot(frames[rows], t).to(cropped)[:, :, None, None] * cropped
        return cropped, padded

    lam, history = LAMBDA0, torch.zeros(iterations, problems)
    for it in range(iterations):
        seeds.grad = torch.zeros_like(seeds)
        for rows in ctx.slices(problems):
            cropped, padded = masks(rows, seeds[rows])
            score = ctx.objective(pyramid.apply(cropped))
            loss = -score + lam * area_loss(padded, keep[rows], per_frame or unsync, perm) * area_scale
            if kernel is not None and it >= CORE_START:
                loss = loss + CORE_WEIGHT * key_region_loss(padded, keep[rows], kernel, core_perm)
            seeds.grad += torch.autograd.grad(loss.sum(), seeds)[0]     # never touches the model's parameters
            history[it, rows] = score.detach().cpu()
        opt.step()
        with torch.no_grad():
            seeds.clamp_(0, 1)
        lam *= LAMBDA_GROWTH
        ctx.report((it + 1) / iterations, f"iteration {it + 1}/{iterations}")

    with torch.no_grad():
        final = torch.cat([masks(rows, seeds[rows])[0] for rows in ctx.slices(problems)])
    probs = ctx.scores(lambda sl: pyramid.apply(final[sl]), problems, span=(1.0, 1.0), score="prob")
    if unsync:      # problem (a, τ) is non-zero in frame τ only: summing over τ assembles area a's mask
        final = final.view(n_areas, t, t, h, w).sum(1)
        probs, history = probs.view(n_areas, t).mean(1), history.view(iterations, n_areas, t).mean(2)
    final = final.float()
    if ctx.score == "prob":
        history = history.exp()
    summed = blur_frames(final.sum(0)[None, None], sigma=10 * scale)[0, 0]
    return MethodOutput(summed / summed.max().clamp(min=1e-12), extras={
        "masks": final.cpu(), "areas": list(areas), "preserved": (final >= 0.5).flatten(1).float().mean(1).tolist(),
        "probs": probs.cpu().tolist(), "history": history})


AREAS = Param("areas", (0.05, 0.1, 0.15, 0.5), "fractions of the clip each mask may keep (one mask per area, "
              "all optimised together; the map is their sum)", 0.001, 1.0)
ITERATIONS = Param("iterations", 1200, "SGD iterations (one forward + backward of every area's clip each)", 1, 5000)
STEP = Param("step", 7, "seed-grid spacing in pixels at 112 px (scales with the frame size)", 2, 32)
SIGMA = Param("sigma", 11.0, "mask smoothness in pixels at 112 px (scales with the frame size)", 1.0, 64.0)
PRECISION = Param("precision", "fp32", "arithmetic of the model's forward and backward passes: bf16 (autocast, "
                  "channels-last) is faster on CPUs with bf16 units and GPUs, far slower where it is emulated; the "
                  "map moves about as much as with another seed (docs/performance.md, bf16)", choices=PRECISIONS)
COMMON = (AREAS, ITERATIONS, STEP, SIGMA, PRECISION)
EP_PRESETS = {"fast": {"iterations": 300, "areas": (0.05, 0.1, 0.2)}, "paper": {}}
EP_COST = "iterations × areas × (forward + backward) + areas + 1 forwards"


def ep_passes(params: dict, shape: tuple[int, int, int], problems: int = 1) -> tuple[int, int]:
    """EP_COST for ``problems`` masks optimised per area (Unsync: one per frame): the optimisation steps, one
    forward per final mask, one of the clean clip."""
    steps = problems * params["iterations"] * len(params["areas"])
    return steps + problems * len(params["areas"]) + 1, steps


def ep_held(params: dict, shape: tuple[int, int, int], problems: int = 1) -> int:
    """Values EP holds, at most: per mask (area × problem) 12 per voxel (its seeds and final mask, and what the mask
    generator and the blur pyramid keep for the backward: positions, gathered levels of 3 colours), and the blur
    pyramid itself (``LEVELS`` colour clips)."""
    return (12 * problems * len(params["areas"]) + 3 * LEVELS) * math.prod(shape) + few_clips(params, shape)


EP_OVERHEAD = 3.5   # the mask generator and its blur pyramid, both ways: a run takes 3.5x its passes on a CPU
EP_SPEC = dict(needs="gradients", score="prob", stochastic=True, presets=EP_PRESETS, overhead=EP_OVERHEAD)
EP3D_SPEC = dict(EP_SPEC, cost=EP_COST, passes=ep_passes, held=ep_held)


def _ep(**fixed):
    """A registered variant: the shared optimiser with some options fixed."""
    def run(ctx: Context, areas: tuple[float, ...], iterations: int, step: int, sigma: float, **params) -> MethodOutput:
        return extremal_masks(ctx, areas, iterations, step=step, sigma=sigma, **fixed, **params)
    return run


register("ep3d", name="Extremal perturbation 3-D (EP-3D)", family="perturbation", paper="[S0] §3.1, [S1] §3.2.1",
         params=COMMON, **EP3D_SPEC,
         description="Learns the smallest smooth region of the clip (a fixed share of all its voxels) that keeps "
                     "the class probability high when everything else is blurred. One mask per share; the map "
                     "is their sum. Faithful by construction, but it needs hundreds of forward and backward "
                     "passes.")(_ep())
register("ep3d_evenly", name="EP-3D evenly (Extm. Ptb. Sync)", family="perturbation", paper="[S0] §4.2, [S1] §4.4",
         params=COMMON, **EP3D_SPEC,
         description="EP-3D with the area constraint applied to every frame separately: each frame keeps the "
                     "same share of its pixels, so the map shows where in each frame, not when.")(_ep(per_frame=True))
register("ep_unsync", name="Extremal perturbation per frame (Unsync)", family="perturbation", paper="[S0] §4.2",
         cost="T × iterations × areas × (forward + backward) + T × areas + 1 forwards",
         passes=lambda p, shape: ep_passes(p, shape, shape[0]), held=lambda p, shape: ep_held(p, shape, shape[0]),
         params=COMMON, **EP_SPEC,
         description="Image-style extremal perturbation for each frame alone, with all other frames blurred; "
                     "the T problems are optimised in one batch. T times the cost of EP-3D, and blind to "
                     "motion across frames.")(_ep(unsync=True))
register("ep3d_temporal_gauss", name="EP-3D with temporal smoothing", family="perturbation",
         paper="[S0] Eq. 7, [S1] Eq. 12",
         **EP3D_SPEC,
         params=COMMON + (Param("delta_t", 1, "temporal smoothing radius Δt of the seed masks, in frames", 1, 3),
                          Param("ends", "renormalised", "the clip's first and last frames: the kernel renormalised "
                                "there (docs/methods.md §20.2), or virtual frames beyond them that the area constraint "
                                "counts, which stops the mask preferring the ends (docs/results.md)",
                                choices=("renormalised", "virtual"))),
         description="EP-3D whose seed masks are smoothed along time in every iteration, so the kept region "
                     "changes gradually from frame to frame. With renormalised ends, area beyond what the evidence "
                     "needs tends to be kept in the clip's first and last frames, so read its temporal curve with "
                     "care. ends=virtual counts what the smoothing spreads past the ends, which takes that advantage "
                     "away from them.")(_ep())
register("step", name="STEP (EP-3D + key-region loss)", family="perturbation", paper="[S1] §3.2.2",
         **EP3D_SPEC,
         params=COMMON + (Param("key_frames", 7, "temporal depth of the ellipsoid key region, in frames", 1, 32),
                          Param("key_shape", "ellipsoid", "key region shape", choices=("ellipsoid", "cylinder"))),
         description="EP-3D with an extra loss that rewards keeping a few compact spatio-temporal blobs "
                     "(ellipsoids several frames deep) instead of scattered pixels: smoother, more connected "
                     "explanations at the same cost.")(_ep())
