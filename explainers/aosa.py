"""AOSA: adaptive occlusion along optical-flow tracks, and its first-order approximation ([S2]; docs/methods.md §13–14,
§20.4).

Written by hand: the reference code has no licence. Anchors on a regular grid of the first frame are tracked
through the clip with Farneback flow (OpenCV); each anchor's occluder follows it as a tube until it leaves
the frame. AOSA integrates each tube with the K − 1 tubes whose motion is most similar (K = 1: AOSA_SGL),
scores the clip with each integrated tube hidden, and weights the kept regions as RISE does (shared with
``occlusion``). AOSA-approx replaces the N forwards by one gradient and N dot products, re-expanding around
the outlying masks (IQR rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from explainers.context import Context, MethodOutput
from explainers.occlusion import FILL, PRECISION, fill_values, kept_region_map, kept_region_weights
from explainers.registry import Param, register

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
# AOSA's letter-box rule (docs/methods.md §13.2), stated at 16×112×112: the top and bottom 3 rows summed over all frames
# below 500,000 grey levels (a mean below about 46) mean bars; anchors then start in rows 12–100 and a track
# leaves the frame outside rows 16–96. Rows scale with the frame height, the threshold with the band's pixels.
LETTERBOX_MEAN = 500_000 / (16 * 2 * 3 * 112)
LETTERBOX_ANCHORS, LETTERBOX_INSIDE = (12, 100), (16, 96)


def grey_frames(rgb: torch.Tensor) -> np.ndarray:
    """A T×H×W×3 clip in [0, 1] as T×H×W uint8 grey levels."""
    return np.stack([cv2.cvtColor((f * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in rgb.numpy()])


def farneback_flow(rgb: torch.Tensor) -> np.ndarray:
    """Flow between consecutive frames of a T×H×W×3 clip in [0, 1]: (T−1)×H×W×2 as (dx, dy) in pixels."""
    grey = grey_frames(rgb)
    return np.stack([cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK) for a, b in zip(grey, grey[1:])])


def letterbox_rows(rgb: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(anchor rows, inside rows), both inclusive, when the clip has dark bars at the top and bottom; else None."""
    grey = grey_frames(rgb)
    h = grey.shape[1]
    band = max(1, round(3 * h / 112))
    bars = np.concatenate([grey[:, :band], grey[:, -band:]], 1)
    if bars.mean() >= LETTERBOX_MEAN:
        return None
    return tuple(tuple(round(v * h / 112) for v in rows) for rows in (LETTERBOX_ANCHORS, LETTERBOX_INSIDE))


@dataclass
class Tracks:
    """Anchor positions (N×T×2, row/column in pixels, integers) and whether each is still tracked (N×T)."""

    positions: torch.Tensor
    tracked: torch.Tensor

    def displacements(self) -> torch.Tensor:
        """Per-frame motion of every anchor, concatenated: N×2(T−1) (zero once it has left the frame)."""
        d = (self.positions[:, 1:] - self.positions[:, :-1]) * self.tracked[:, 1:, None]
        return d.flatten(1).float()


def track_anchors(flow: np.ndarray, size: tuple[int, int], stride: int,
                  letterbox: tuple[tuple[int, int], tuple[int, int]] | None = None) -> Tracks:
    """Anchors at stride/2 + k·stride on the first frame, moved by the flow sampled at their integer position
    and rounded. An anchor whose next position falls outside the frame stops being tracked (frame-out). With
    ``letterbox`` (see ``letterbox_rows``) anchors start only in its anchor rows and leave outside its inside rows."""
    h, w = size
    (top, bottom), (first, last) = letterbox or ((0, h - 1), (0, h - 1))
    rows = np.arange(stride // 2, h, stride)
    rows = rows[(rows >= top) & (rows <= bottom)]
    ys, xs = np.meshgrid(rows, np.arange(stride // 2, w, stride), indexing="ij")
    pos = np.stack([ys.ravel(), xs.ravel()], 1)
    alive = np.ones(len(pos), bool)
    positions, tracked = [pos.copy()], [alive.copy()]
    for f in flow:
        step = f[pos[:, 0], pos[:, 1]][:, ::-1]                          # (dx, dy) → (dy, dx)
        new = np.round(pos + step).astype(int)
        alive &= (new[:, 0] >= first) & (new[:, 0] <= last) & (new[:, 1] >= 0) & (new[:, 1] < w)
        pos = np.where(alive[:, None], new, pos)
        positions.append(pos.copy())
        tracked.append(alive.copy())
    return Tracks(torch.from_numpy(np.stack(positions, 1)), torch.from_numpy(np.stack(tracked, 1)))


def similar_groups(tracks: Tracks, k: int) -> torch.Tensor:
    """Each anchor with the k − 1 anchors whose displacement vectors have the highest cosine similarity
    (self excluded): N×k indices, the anchor itself first."""
    n = len(tracks.positions)
    own = torch.arange(n)[:, None]
    if k <= 1:
        return own
    v = F.normalize(tracks.displacements(), dim=1)
    sim = v @ v.T
    sim.fill_diagonal_(-float("inf"))
    return torch.cat([own, sim.topk(min(k - 1, n - 1), dim=1).indices], 1)


def tube_holes(tracks: Tracks, anchors: torch.Tensor, size: tuple[int, int], occluder: int,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Occluded voxels of tubes, as 1 (hidden) and 0: a box of ``occluder`` pixels around the anchor in every
    frame where it is tracked. ``anchors`` B (one tube each) or B×k (the union of k tubes each) → B×T×H×W.

    A box is the outer product of its row and column ranges, so the number of boxes over each pixel is a
    batched (H×k)·(k×W) product per frame, and min(count, 1) is the union: made on ``device``, with no
    B×k×T×H×W tensor and no boolean one."""
    groups = anchors[:, None] if anchors.dim() == 1 else anchors
    h, w = size
    pos, on = tracks.positions[groups].to(device), tracks.tracked[groups].to(device)    # B×k×T×2, B×k×T
    start = pos - occluder // 2                                                         # B×k×T×2 box corners
    r, c = torch.arange(h, device=device), torch.arange(w, device=device)
    rows = (r >= start[..., :1]) & (r < start[..., :1] + occluder) & on[..., None]    # B×k×T×H
    cols = (c >= start[..., 1:]) & (c < start[..., 1:] + occluder)                    # B×k×T×W
    count = torch.matmul(rows.permute(0, 2, 3, 1).to(dtype).contiguous(), cols.transpose(1, 2).to(dtype).contiguous())
    return count.clamp_(max=1)


def _setup(ctx: Context, stride: int, k: int, occluder: int, fill: str, letterbox: bool):
    size = ctx.shape[1:]
    ctx.report(0.0, "optical flow")
    rgb = ctx.rgb()
    bars = letterbox_rows(rgb) if letterbox else None
    tracks = track_anchors(farneback_flow(rgb), size, stride, bars)
    groups = similar_groups(tracks, k)
    device = ctx.x.device

    def holes_of(sl: slice | torch.Tensor) -> torch.Tensor:
        return tube_holes(tracks, groups[sl], size, occluder, device, ctx.x.dtype)

    value = fill_values(ctx.x, fill)
    extras = {"tracks": tracks.positions, "tracked": tracks.tracked, "groups": groups, "anchors": len(groups),
              "letterbox": bars}
    return holes_of, len(groups), value, extras


PARAMS = (Param("stride", 8, "anchor spacing on the first frame in pixels (8: 14×14 anchors at 112 px; 4: 28×28)", 2,
                64),
          Param("occluder", 16, "occluder box size in pixels", 2, 112),
          FILL,
          Param("letterbox", True, "treat dark bands at the top and bottom as letter-box bars: no anchors "
                                   "there, and a track that enters them leaves the frame"))


@register("aosa", name="AOSA (adaptive occlusion)", family="perturbation", paper="[S2] §3.1–3.3",
          needs="forward", cost="anchors + 1 forwards (197 at stride 8, 112 px) + Farneback flow on the CPU",
          passes=lambda p, shape: (math.ceil(shape[1] / p["stride"]) * math.ceil(shape[2] / p["stride"]) + 1, 0),
          overhead=1.4,              # the optical flow and each batch's occluded tubes
          score="prob", params=(Param("k", 3, "tubes occluded together: each anchor with its k − 1 most similarly "
                                           "moving anchors (1 = AOSA_SGL)", 1, 50),) + PARAMS + (PRECISION,),
          presets={"paper": {"fill": "zero"}},
          description="Occludes small boxes that follow the motion of the clip (optical-flow tracks), so a moving "
                      "object stays hidden in every frame, and hides tubes that move together at the same time. "
                      "Much cheaper than 3-D occlusion and aware of motion.")
def aosa(ctx: Context, k: int, stride: int, occluder: int, fill: str, letterbox: bool) -> MethodOutput:
    """AOSA ([S2] Eq. 1–2): kept-region weighted occlusion of N integrated tubes. Extras: ``tracks``
    (N×T×2 anchor positions), ``tracked``, ``groups`` (N×k), ``letterbox`` (rows or None), ``scores`` (p_i)."""
    holes_of, n, value, extras = _setup(ctx, stride, k, occluder, fill, letterbox)
    saliency, scores = kept_region_map(ctx, lambda sl: keep(holes_of(sl)), n, "AOSA", fill=value)
    return MethodOutput(saliency, extras={**extras, "scores": scores})


def keep(holes: torch.Tensor) -> torch.Tensor:
    """Keep masks from hole masks, in place: 1 − holes."""
    return holes.neg_().add_(1)


def _linearise(ctx: Context, points: torch.Tensor, hole_points: torch.Tensor, diff: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First-order expansions of the score at P points p (P×C×T×H×W, each the clip occluded by the P×T×H×W hole
    mask H_p), one forward + backward each: f̂_i = f(p) + J_p·(x − v)·(Ω_i − Ω_p) = base_p − e_p·H_i, taken over
    the hole masks H = 1 − Ω, whose few nonzero voxels keep the sum precise. Returns f(p), base and e (P×T·H·W)."""
    f_values, jacobians = [], []
    for sl in ctx.slices(len(points)):
        with torch.enable_grad():
            xs = points[sl].detach().requires_grad_(True)
            f = ctx.objective(xs)
            if ctx.score == "prob":
                f = f.exp()
            (j,) = torch.autograd.grad(f.sum(), xs)
        f_values.append(f.detach())
        jacobians.append(j)
    f_value = torch.cat(f_values)
    e = (torch.cat(jacobians) * diff).sum(1).flatten(1)
    return f_value.cpu(), f_value + (hole_points.flatten(1) * e).sum(1), e


def _estimate(holes: torch.Tensor, base: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """f̂ of B×T×H×W hole masks at each of the P expansion points: B×P, on the CPU."""
    return (base - holes.flatten(1) @ e.T).cpu()


@register("aosa_approx", name="AOSA-approx (first-order)", family="perturbation", paper="[S2] §3.4–3.5",
          needs="gradients", cost="1–3 × (forward + backward) + anchors dot products", score="prob",
          passes=lambda p, shape: (3, 3) if p["adjust"] else (1, 1),
          params=(Param("k", 3, "tubes occluded together (1 = single tubes)", 1, 50),) + PARAMS +
                 (Param("adjust", True, "re-expand around the outlying masks (IQR rule); costs up to 2 more "
                                        "forward + backward passes"),),
          presets={"paper": {"fill": "zero"}},
          description="Estimates what AOSA would measure from a single gradient: the change of the class "
                      "probability when a tube is hidden is approximated linearly. Near-instant; re-checks the "
                      "masks whose estimate looks extreme.")
def aosa_approx(ctx: Context, k: int, stride: int, occluder: int, fill: str, letterbox: bool,
                adjust: bool) -> MethodOutput:
    """AOSA-approx ([S2] Eq. 7 and the IQR adjustment): first-order estimates f̂_i of the occluded scores,
    then the map of §13.4. Extras as ``aosa`` plus ``expansions`` (masks used as extra expansion points)."""
    holes_of, n, value, extras = _setup(ctx, stride, k, occluder, fill, letterbox)
    fill_value = torch.zeros_like(ctx.x) if value is None else value
    diff = (ctx.x - fill_value)[0]
    none = torch.zeros(1, *ctx.shape, dtype=ctx.x.dtype, device=ctx.x.device)
    (p0,), base, e = _linearise(ctx, ctx.x, none, diff)
    estimates = torch.cat([_estimate(holes_of(sl), base, e)[:, 0] for sl in ctx.slices(n)])
    expansions, point_of = [], torch.full((n,), -1)       # point_of: the expansion point re-estimating each mask
    if adjust and n >= 4:
        d = estimates - p0
        q1, q3 = torch.quantile(d, 0.25), torch.quantile(d, 0.75)
        iqr = q3 - q1
        for outliers, largest in ((d > q3 + 1.5 * iqr, True), (d < q1 - 1.5 * iqr, False)):
            if outliers.any():
                idx = torch.nonzero(outliers)[:, 0]
                point_of[outliers] = len(expansions)
                expansions.append(int(idx[d[idx].argmax()] if largest else idx[d[idx].argmin()]))
    if expansions:                          # the most extreme high and low masks, as expansion points together
        holes = holes_of(torch.tensor(expansions))
        _, base_p, e_p = _linearise(ctx, ctx.x + (fill_value - ctx.x) * holes[:, None], holes, diff)
    total = torch.zeros(ctx.shape, device=ctx.x.device)
    for sl in ctx.slices(n):                # re-estimation and the map share one pass over the masks
        holes, point = holes_of(sl), point_of[sl]
        again = point >= 0
        if again.any():
            estimates[sl][again] = _estimate(holes, base_p, e_p)[again, point[again]]
        total.add_(kept_region_weights((estimates[sl] - p0).to(holes.device), keep(holes)))
    ctx.report(1.0, "AOSA-approx")
    return MethodOutput(total / n, extras={**extras, "scores": estimates, "expansions": expansions})
