"""How good is a saliency volume? Faithfulness (insertion/deletion, saliency metric), localisation against
ground truth (spatial and temporal pointing games, weak localisation) and sanity (does the map change when the
model is destroyed or the frames reversed?). Spec: docs/methods.md §15, §20.6–§20.8.

Metrics that need the model evaluate every perturbed clip of one curve in as few batched forwards as the batch
cap allows (29 clips for 28 steps, not 28 calls), under ``torch.inference_mode``, with the softmax probability of
the target. ``METRICS`` states each metric's direction and what it needs, for reports and the app.
"""
from __future__ import annotations

import copy
import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explainers.device import default_batch, forward
from explainers.layers import eval_mode
from explainers.maps import blurred, impute, normalise


@dataclass(frozen=True)
class MetricSpec:
    id: str
    name: str
    higher_is_better: bool
    needs: tuple[str, ...]           # "model", "boxes", "window", "method" (runs the explainer again),
                                     # "extra" (computed when asked for: ``evaluate_map(extra=True)``)
    help: str
    over_clips: bool = False         # a rate over many clips (one clip's value is only 0 or 100 %)


METRICS = {m.id: m for m in (
    MetricSpec("insertion", "Insertion AUC (CI)", True, ("model",),
               "probability as the most salient voxels are restored into a blurred clip; area under the curve"),
    MetricSpec("deletion", "Deletion AUC (CD)", False, ("model",),
               "probability as the most salient voxels are replaced by the mean colour; area under the curve"),
    MetricSpec("road_morf", "ROAD, most relevant first", False, ("model", "extra"),
               "probability as the most salient voxels are removed and filled in from their neighbours (so the "
               "removed shape gives nothing away); area under the curve"),
    MetricSpec("road_lerf", "ROAD, least relevant first", True, ("model", "extra"),
               "as ROAD (MoRF) removing the least salient voxels first: a faithful map keeps the class"),
    MetricSpec("infidelity", "Infidelity", False, ("model", "extra"),
               "how badly the map, best scaled, predicts the probability drop of 64 random removals (squared error; "
               "Yeh et al. 2019); on SynthActions-10 it ranks the ground truth below random: read with care"),
    MetricSpec("s50", "Saliency metric S50", False, ("model",),
               "log(max(area, 0.05)) − log(p) keeping the voxels with saliency ≥ 0.5, the rest blurred"),
    MetricSpec("s75", "Saliency metric S75", False, ("model",), "as S50 with threshold 0.75"),
    MetricSpec("pointing", "Spatial pointing game", True, ("boxes",),
               "share of frames whose saliency peak lies within 7 px (at 112 px) of the actor's box"),
    MetricSpec("temporal_pointing", "Temporal pointing game", True, ("window",),
               "1 if the frame with the most saliency lies inside the action window"),
    MetricSpec("loc_iou_val", "Localisation IoU (Val)", True, ("boxes",),
               "mean IoU of the actor's box with the box around the pixels ≥ 0.5 of each frame's map (scaled to "
               "[0, 1] per frame)"),
    MetricSpec("loc_iou_mean", "Localisation IoU (Mean)", True, ("boxes",),
               "as IoU (Val) keeping the pixels ≥ the frame's mean"),
    MetricSpec("loc_iou_energy", "Localisation IoU (Energy)", True, ("boxes",),
               "as IoU (Val) keeping the top pixels that hold 50 % of the frame's saliency"),
    MetricSpec("loc_error_val", "Localisation error (Val)", False, ("boxes",),
               "% of clips whose IoU (Val) is at most 0.5", over_clips=True),
    MetricSpec("loc_error_mean", "Localisation error (Mean)", False, ("boxes",),
               "% of clips whose IoU (Mean) is at most 0.5", over_clips=True),
    MetricSpec("loc_error_energy", "Localisation error (Energy)", False, ("boxes",),
               "% of clips whose IoU (Energy) is at most 0.5", over_clips=True),
    MetricSpec("sanity_model", "Sanity: ρ with a random model", False, ("method",),
               "Spearman ρ of the map with the method's map of the same model re-initialised: near 1, the map does "
               "not depend on what the model learnt (Adebayo et al. 2018)"),
    MetricSpec("sanity_reversed", "Sanity: ρ with the frames reversed", False, ("method",),
               "Spearman ρ of the map with the method's map of the clip played backwards, frames put back in "
               "order: near 1, the map ignores the order of the frames that tells moving left from right"),
    MetricSpec("max_sensitivity", "Max-sensitivity", False, ("model", "method"),
               "the largest relative change of the map when faint noise (±0.02) is added to the clip, over 10 "
               "draws (Yeh et al. 2019); a map that ignores the clip scores 0: read it beside a faithfulness metric"),
)}


# ------------------------------------------------------------------------------------------- insertion/deletion
@dataclass
class Curve:
    fractions: np.ndarray            # share of units inserted/deleted at each step, 0 … 1
    probs: np.ndarray                # target probability at each step
    auc: float


def auc(values: np.ndarray) -> float:
    """Trapezoid area on an evenly spaced [0, 1] axis: (Σ s − s₀/2 − sₙ/2) / n."""
    v = np.asarray(values, np.float64)
    return float((v.sum() - v[0] / 2 - v[-1] / 2) / (len(v) - 1))


def sortable(a: torch.Tensor) -> torch.Tensor:
    """The values of a map, flattened, as int32 keys in the same order: a float's bits, with the negatives'
    reversed, order as the floats do, and torch sorts integers by radix, 5× faster than floats on a CPU (in
    ascending order only: ``~keys`` sorts descending)."""
    bits = (a.detach().flatten().float() + 0.0).view(torch.int32)       # + 0.0: -0.0 becomes 0.0, as floats compare
    return torch.where(bits < 0, (bits & 0x7FFFFFFF).neg_() - 1, bits)


def unit_ranks(saliency: torch.Tensor, mode: str, patch_grid: int = 16, seed: int = 0) -> torch.Tensor:
    """Rank (0 = most salient) of the unit each voxel belongs to, as a T×H×W long tensor, and the unit count.

    ``voxel``: every voxel is a unit; ``patch``: a patch_grid×patch_grid grid per frame (mean saliency);
    ``frame``: whole frames (total saliency). Ties are broken at random, seeded.
    """
    t, h, w = saliency.shape
    if mode == "voxel":
        units = saliency.flatten()
    elif mode == "patch":
        units = F.adaptive_avg_pool2d(saliency[:, None].float(), patch_grid)[:, 0].flatten()
    elif mode == "frame":
        units = saliency.sum((1, 2))
    else:
        raise ValueError(f"mode must be voxel, patch or frame, got {mode!r}")
    gen = torch.Generator().manual_seed(seed)
    shuffle = torch.randperm(len(units), generator=gen)
    order = shuffle[torch.argsort(~sortable(units[shuffle]), stable=True)]       # descending: ~ reverses the order
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    if mode == "voxel":
        return rank.view(t, h, w)
    if mode == "frame":
        return rank.view(t, 1, 1).expand(t, h, w)
    cells = rank.view(t, patch_grid, patch_grid)
    rows = (torch.arange(h) * patch_grid // h)
    cols = (torch.arange(w) * patch_grid // w)
    return cells[:, rows][:, :, cols]


def _probabilities(model: nn.Module, make, n: int, target: int, max_batch: int | None, precision: str = "fp32"
                   ) -> np.ndarray:
    out = []
    if max_batch is None:
        max_batch = default_batch(next((p.device for p in model.parameters()), torch.device("cpu")))
    with eval_mode(model), torch.inference_mode():
        for start in range(0, n, max_batch):
            xs = make(range(start, min(start + max_batch, n)))
            out.append(forward(model, xs, precision).softmax(-1)[:, target])
    return torch.cat(out).cpu().numpy()


Ends = tuple[float, float, float]


def curve_ends(curves: dict[str, Curve]) -> Ends:
    """The probabilities at the ends of a map's insertion and deletion curves that no map changes: of the
    insertion's start clip, of the clip itself and of the deletion's end clip (``insertion_deletion``'s ``ends``
    for other maps of the same clip, model, class, fills and precision)."""
    insertion, deletion = curves["insertion"].probs, curves["deletion"].probs
    return float(insertion[0]), float(insertion[-1]), float(deletion[-1])


def insertion_deletion(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: int, steps: int = 28,
                       mode: str = "voxel", insert_from: torch.Tensor | None = None,
                       delete_to: torch.Tensor | None = None, max_batch: int | None = None, seed: int = 0,
                       precision: str = "fp32", ends: Ends | None = None) -> dict[str, Curve]:
    """Insertion and deletion curves of one clip: 2 × (steps + 1) clips, forwarded in batches of ``max_batch``
    (default: by device, ``default_batch``) at ``precision`` ("fp32", or "bf16": curves within about 1e-2;
    docs/performance.md, bf16); 2 × (steps − 1) with ``ends`` (``curve_ends`` of another map of the same clip,
    model, class, fills and precision), whose clips are the same for every map.

    Deletion replaces the top units by ``delete_to`` (default zeros = the mean colour); insertion restores them
    into ``insert_from`` (default: the clip blurred per frame). Returns {"insertion": Curve, "deletion": Curve}.
    """
    rank = unit_ranks(saliency, mode, seed=seed).to(x.device)
    n_units = int(rank.max()) + 1
    counts = torch.round(torch.linspace(0, n_units, steps + 1)).long()
    start = blurred(x) if insert_from is None else insert_from
    end = torch.zeros_like(x) if delete_to is None else delete_to
    ranked, order = rank.flatten().sort(stable=True)
    changed = torch.searchsorted(ranked, counts.to(ranked)).tolist()   # voxels inserted/deleted by step k
    sources = ((start, x), (x, end))                                    # insertion, deletion: (from, what enters)
    running: dict[int, tuple[int, torch.Tensor]] = {}                   # curve -> (step, its clip at that step)

    todo = [i for i in range(2 * (steps + 1)) if ends is None or i % (steps + 1) not in (0, steps)]

    def make(positions: range) -> torch.Tensor:
        """Each step's clip from the one before it in the same curve (batches come in order): the voxels that
        enter at this step copied in, under half the time of blending two whole clips, and the same values."""
        clips = torch.empty(len(positions), *x.shape[1:], dtype=x.dtype, device=x.device)
        for j, i in enumerate(todo[p] for p in positions):
            curve, k = divmod(i, steps + 1)
            base, enters = sources[curve]
            done, clip = running.get(curve, (0, None))
            if clip is None or done > k:
                done, clip = 0, base[0].clone(memory_format=torch.contiguous_format)
            entering = order[changed[done]:changed[k]]
            clip.view(len(clip), -1).index_copy_(1, entering, enters[0].reshape(len(clip), -1)[:, entering])
            running[curve] = (k, clip)
            clips[j] = clip
        return clips

    probs = np.empty(2 * (steps + 1), np.float32)
    probs[todo] = _probabilities(model, make, len(todo), target, max_batch, precision)
    if ends is not None:
        probs[[0, steps, steps + 1, -1]] = ends[0], ends[1], ends[1], ends[2]
    fractions = (counts.float() / n_units).numpy()
    ins, dele = probs[:steps + 1], probs[steps + 1:]
    return {"insertion": Curve(fractions, ins, auc(ins)), "deletion": Curve(fractions, dele, auc(dele))}


ROAD_NOISE = 0.01      # σ of the noise on imputed voxels, in normalised units (ROAD's NoisyLinearImputer)


def road(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: int, steps: int = 28,
         noise: float = ROAD_NOISE, max_batch: int | None = None, seed: int = 0, precision: str = "fp32"
         ) -> dict[str, Curve]:
    """ROAD (Rong et al. 2022, remove and debias) on a clip: the probability as the most (MoRF) or least (LeRF)
    salient voxels are removed and filled in from their kept neighbours in T×H×W (``maps.impute``, plus Gaussian
    noise of σ = ``noise``, seeded), so that the shape of what was removed tells the model nothing. Ranks, steps
    and batches as ``insertion_deletion``: 2 × (steps + 1) forwards. Returns {"road_morf": Curve,
    "road_lerf": Curve}."""
    rank = unit_ranks(saliency, "voxel", seed=seed).to(x.device)
    n_units = rank.numel()
    counts = torch.round(torch.linspace(0, n_units, steps + 1)).long()
    gen = torch.Generator().manual_seed(seed)
    jitter = (noise * torch.randn(x.shape, generator=gen)).to(x)

    def make(idx: range) -> torch.Tensor:
        kept = []
        for i in idx:
            order, k = divmod(i, steps + 1)
            removed = rank < counts[k] if order == 0 else rank >= n_units - counts[k]
            kept.append((~removed).to(x.dtype)[None, None])
        kept = torch.cat(kept)
        return torch.where(kept.bool(), x, impute(x.expand(len(kept), -1, -1, -1, -1), kept) + jitter)

    probs = _probabilities(model, make, 2 * (steps + 1), target, max_batch, precision)
    fractions = (counts.float() / n_units).numpy()
    morf, lerf = probs[:steps + 1], probs[steps + 1:]
    return {"road_morf": Curve(fractions, morf, auc(morf)), "road_lerf": Curve(fractions, lerf, auc(lerf))}


def infidelity(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: int, samples: int = 64,
               grid: tuple[int, int, int] = (4, 7, 7), share: float = 0.1, seed: int = 0,
               max_batch: int | None = None, precision: str = "fp32") -> float:
    """Infidelity (Yeh et al. 2019), normalised, with removal perturbations: ``samples`` random removals R (each
    cell of a T×H×W ``grid`` hidden with probability ``share``, set to 0: the mean colour; seeded); the map, scaled
    by the β that fits best, should predict how much each lowers the probability: E[(β·Σ_R S − (p(x) − p_R))²].
    Lower is better; 0 when the drops are proportional to the map's sums. Hand-written, equal to Captum's
    ``infidelity`` with the same perturbations (a test), which would bring matplotlib into the app. ``samples`` + 1
    forwards."""
    gen = torch.Generator().manual_seed(seed)
    cells = (torch.rand(samples, 1, *grid, generator=gen) < share).float()
    masks = F.interpolate(cells, size=tuple(x.shape[2:]), mode="nearest").to(x)            # N×1×T×H×W, 1 = hidden
    probs = _probabilities(model, lambda idx: x * (1 - masks[idx.start:idx.stop]), samples, target, max_batch,
                           precision)
    p0 = _probabilities(model, lambda idx: x, 1, target, 1, precision)[0]
    a = (masks[:, 0].cpu().double() * saliency.double()).flatten(1).sum(1)
    drop = p0 - torch.as_tensor(probs, dtype=torch.float64)
    beta = (a * drop).mean() / (a * a).mean().clamp(min=1e-24)
    return float(((beta * a - drop) ** 2).mean())


def perturbed_clip(x: torch.Tensor, saliency: torch.Tensor, fraction: float, kind: str, mode: str = "voxel",
                   seed: int = 0) -> torch.Tensor:
    """The insertion or deletion clip after ``fraction`` of the units, for display."""
    rank = unit_ranks(saliency, mode, seed=seed).to(x.device)
    kept = (rank < round(fraction * (int(rank.max()) + 1))).to(x.dtype)[None, None]
    if kind == "insertion":
        return blurred(x) * (1 - kept) + x * kept
    return x * (1 - kept)


# ------------------------------------------------------------------------------------------- saliency metric
def saliency_metric(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: int,
                    thresholds: tuple[float, ...] = (0.5, 0.75), tau: float = 0.05, precision: str = "fp32"
                    ) -> dict[float, float]:
    """SM = log(max(a, τ)) − log(p) per threshold: keep voxels with normalised saliency ≥ threshold, blur the rest.

    Lower is better (a small region that keeps the class probable). All thresholds in one batch.
    """
    s = normalise(saliency).to(x.device)
    base = blurred(x)
    keeps = [(s >= thr).to(x.dtype)[None, None] for thr in thresholds]
    probs = _probabilities(model, lambda idx: torch.cat([base * (1 - keeps[i]) + x * keeps[i] for i in idx]),
                           len(thresholds), target, len(thresholds), precision)
    return {thr: math.log(max(float(k.mean()), tau)) - math.log(max(float(p), 1e-12))
            for thr, k, p in zip(thresholds, keeps, probs)}


# ------------------------------------------------------------------------------------------- ground truth
def _scaled_tolerance(saliency: torch.Tensor, tolerance_at_112: float) -> float:
    return tolerance_at_112 * saliency.shape[1] / 112


def pointing_game(saliency: torch.Tensor, boxes: np.ndarray, visible: np.ndarray | None = None,
                  tolerance: float = 7.0) -> float:
    """Share of frames (with a visible box) whose saliency maximum lies within ``tolerance`` px (at 112 px,
    scaled) of the box: a hit if a disc around the peak intersects the box. x = column, y = row."""
    tol = _scaled_tolerance(saliency, tolerance)
    hits = []
    w = saliency.shape[2]
    for t, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
        if (visible is not None and not visible[t]) or x1 <= x0 or y1 <= y0:
            continue
        row, col = divmod(int(saliency[t].argmax()), w)
        px, py = col + 0.5, row + 0.5                     # pixel centre; boxes have exclusive ends
        dx = max(x0 - px, 0.0, px - x1)
        dy = max(y0 - py, 0.0, py - y1)
        hits.append(dx * dx + dy * dy <= tol * tol)
    return float(np.mean(hits)) if hits else float("nan")


def box_volume(shape: tuple[int, int, int], boxes: np.ndarray, visible: np.ndarray | None = None,
               window: tuple[int, int] | None = None, outside: float = 0.8) -> torch.Tensor:
    """The ground truth as a map: 1 inside the actor's box in the frames of the action ``window``, ``outside``
    inside its box in the other frames where it is visible (where it stands before and after the action tells
    the action apart too), 0 elsewhere. The oracle that every metric must rank above the baselines."""
    t, h, w = shape
    out = torch.zeros(shape)
    for f, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)[:t]):
        if visible is not None and not visible[f]:
            continue
        value = 1.0 if window is None or window[0] <= f <= window[1] else outside
        out[f, max(0, math.floor(y0)):min(h, math.ceil(y1)), max(0, math.floor(x0)):min(w, math.ceil(x1))] = value
    return out


def temporal_pointing_game(saliency: torch.Tensor, window: tuple[int, int]) -> float:
    """1.0 if the frame with the largest saliency mass lies in the inclusive action window, else 0.0."""
    return float(window[0] <= int(saliency.sum((1, 2)).argmax()) <= window[1])


def threshold_mask(frame: torch.Tensor, rule: str, alpha: float) -> torch.Tensor:
    """Pixels of one map frame, scaled to [0, 1] on its own, that survive the Val / Mean / Energy rule."""
    if rule == "val":
        return frame >= alpha
    if rule == "mean":
        return frame >= alpha * frame.mean()
    if rule == "energy":  # ties in random (seeded) order, so a flat region is kept evenly, not row by row
        shuffle = torch.randperm(frame.numel(), generator=torch.Generator().manual_seed(0))
        values, order = frame.flatten()[shuffle].sort(descending=True, stable=True)
        order = shuffle[order]
        cum = values.cumsum(0)
        keep = int((cum < alpha * cum[-1]).sum()) + 1
        mask = torch.zeros(frame.numel(), dtype=torch.bool)
        mask[order[:keep]] = True
        return mask.view_as(frame)
    raise ValueError(f"rule must be val, mean or energy, got {rule!r}")


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def localisation_iou(saliency: torch.Tensor, boxes: np.ndarray, visible: np.ndarray | None = None,
                     rule: str = "val", alpha: float | None = None) -> float:
    """Mean IoU over frames (with a visible box) between the tightest box around the thresholded map and the
    ground truth. Each frame is scaled to [0, 1] on its own first; a frame whose map is constant points nowhere
    (IoU 0). Defaults α: Val 0.5, Mean 1.0, Energy 0.5 (docs/methods.md §15.5, §20.8)."""
    alpha = {"val": 0.5, "mean": 1.0, "energy": 0.5}[rule] if alpha is None else alpha
    ious = []
    for t, gt in enumerate(np.asarray(boxes, np.float64)):
        if (visible is not None and not visible[t]) or gt[2] <= gt[0] or gt[3] <= gt[1]:
            continue
        frame = saliency[t].float()
        if frame.max() <= frame.min():
            ious.append(0.0)
            continue
        rows, cols = torch.nonzero(threshold_mask(normalise(frame), rule, alpha), as_tuple=True)
        pred = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float64)
        ious.append(box_iou(pred, gt))
    return float(np.mean(ious)) if ious else float("nan")


# ------------------------------------------------------------------------------------------- all at once
EVALUATION_OVERHEAD = 1.7   # seconds of ``evaluate_map`` / its forwards' on a CPU (blurring, ranking, inserting)


def evaluation_forwards(steps: int = 28) -> int:
    """Clip forwards of ``evaluate_map``: insertion and deletion (steps + 1 each), then S50 and S75."""
    return 2 * (steps + 1) + 2


DELETION_ENDS = ("mean", "blur")     # what deletion replaces the voxels with: the mean colour (the papers') or the
                                     # blurred clip
EXTRA = ("road", "infidelity")     # the groups of extra metrics ``evaluate_map`` computes when asked


def extra_forwards(steps: int = 28, samples: int = 64) -> int:
    """Clip forwards of ``evaluate_map``'s ``extra`` metrics: ROAD's two curves, then infidelity's removals."""
    return 2 * (steps + 1) + samples + 1


def evaluate_map(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: int, truth: dict | None = None,
                 steps: int = 28, max_batch: int | None = None, precision: str = "fp32",
                 extra: bool | tuple[str, ...] = False, ends: Ends | None = None, deletion_end: str = "mean"
                 ) -> tuple[dict[str, float], dict[str, Curve]]:
    """Every metric of ``METRICS`` that applies to one map, keyed by metric id, and the insertion/deletion curves
    (with ``extra`` True, also ROAD's curves and infidelity: ``extra_forwards(steps)`` more forwards; or only
    the groups of ``EXTRA`` it names).

    ``truth`` (optional) holds the actor's per-frame ``bbox`` (x0, y0, x1, y1 in map pixels), ``visible`` and the
    action ``window`` (first, last frame, or None); localisation IoUs are means over the boxed frames, errors 0/1
    per clip (1: that IoU ≤ 0.5).
    Cost: ``evaluation_forwards(steps)`` forwards, at ``precision``; 4 fewer with ``ends`` (``insertion_deletion``).
    ``deletion_end`` "blur" deletes into the blurred clip that insertion starts from instead of the mean colour
    (TCSVT's ``remove_method="blur"``; docs/methods.md §20.6), ``ends`` then of maps scored so.
    """
    if deletion_end not in DELETION_ENDS:
        raise ValueError(f"deletion_end must be one of {list(DELETION_ENDS)}, got {deletion_end!r}")
    curves = insertion_deletion(model, x, saliency, target, steps=steps, max_batch=max_batch, precision=precision,
                                ends=ends, delete_to=blurred(x) if deletion_end == "blur" else None)
    sm = saliency_metric(model, x, saliency, target, precision=precision)
    values = {"insertion": curves["insertion"].auc, "deletion": curves["deletion"].auc, "s50": sm[0.5],
              "s75": sm[0.75]}
    groups = EXTRA if extra is True else extra or ()
    if "road" in groups:
        curves.update(road(model, x, saliency, target, steps=steps, max_batch=max_batch, precision=precision))
        values.update({k: curves[k].auc for k in ("road_morf", "road_lerf")})
    if "infidelity" in groups:
        values["infidelity"] = infidelity(model, x, saliency, target, max_batch=max_batch, precision=precision)
    if truth is not None:
        values["pointing"] = pointing_game(saliency, truth["bbox"], truth["visible"])
        if truth.get("window") is not None:
            values["temporal_pointing"] = temporal_pointing_game(saliency, truth["window"])
        for rule in ("val", "mean", "energy"):
            iou = localisation_iou(saliency, truth["bbox"], truth["visible"], rule)
            values[f"loc_iou_{rule}"], values[f"loc_error_{rule}"] = iou, float(iou <= 0.5)
    return values, curves


# ------------------------------------------------------------------------------------------- masked accuracy
def masked_predictions(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor,
                       keep: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10, 0.20), seed: int = 0,
                       precision: str = "fp32") -> dict[float, int]:
    """Top-1 class of the clip keeping only the top ``keep`` fraction of voxels, the rest blurred ([S0] supp. S3).

    Top-1 accuracy over a data set = the share of clips where this equals the label. One batched forward.
    """
    rank = unit_ranks(saliency, "voxel", seed=seed).to(x.device)
    base = blurred(x)
    n = rank.numel()
    kept = [(rank < round(k * n)).to(x)[None, None] for k in keep]
    with eval_mode(model), torch.inference_mode():
        preds = forward(model, torch.cat([base * (1 - m) + x * m for m in kept]), precision).argmax(-1).tolist()
    return dict(zip(keep, preds))


# ------------------------------------------------------------------------------------------- sanity check
def ranks(a: torch.Tensor) -> torch.Tensor:
    """The rank of each value of a map, flattened (0 = lowest; ties broken by position), sorted as ``sortable``
    keys."""
    order = sortable(a).argsort(stable=True)
    return torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))


def rank_correlation(ra: torch.Tensor, rb: torch.Tensor) -> float:
    """Spearman's ρ of two maps from their ``ranks`` (a permutation each, so 1 − 6 Σd² / (n (n² − 1)))."""
    n = ra.numel()
    d = (ra - rb).double()
    return float(1 - 6 * d.dot(d) / (n * (n * n - 1.0))) if n > 1 else 1.0


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation of two maps (ties broken by position)."""
    return rank_correlation(ranks(a), ranks(b))


RESEED = 7_919      # offset of the re-initialisation seed: a toy model made right after manual_seed(0) would
                    # otherwise be re-initialised to its own weights


def _parametrised_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with parameters of their own that can re-initialise them, from the input to the output."""
    return [(name, m) for name, m in model.named_modules()
            if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))]


def cascading_randomisation(model: nn.Module, x: torch.Tensor, method: str, target: int | None = None,
                            seed: int = 0, **params) -> list[tuple[str, float]]:
    """Adebayo et al.'s model-parameter randomisation test ([S0] ref. 1), cascading from the output.

    Re-initialises the model's parametrised layers one by one from the top (on a copy) and returns, after each,
    (layer name, Spearman correlation between the original and the new map). A method that depends on the
    model decorrelates; one that does not (edge detection, ``centre``) stays near 1.
    """
    from explainers import explain

    original = explain(model, x, method, target=target, seed=seed, **params)
    reference = ranks(original.saliency)
    clone = copy.deepcopy(model)
    out = []
    with torch.random.fork_rng():           # seeded re-initialisation, the caller's random state untouched
        torch.manual_seed(RESEED + seed)
        for name, module in reversed(_parametrised_layers(clone)):
            with torch.no_grad():
                module.reset_parameters()
            e = explain(clone, x, method, target=original.target, seed=seed, **params)
            out.append((name, rank_correlation(reference, ranks(e.saliency))))
    return out


KEEP_COPY_BYTES = 32 << 20      # a model whose parameters take at most this keeps its re-initialised copy
_kept_copies: weakref.WeakKeyDictionary[nn.Module, tuple[int, nn.Module]] = weakref.WeakKeyDictionary()


def _reinitialised(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every parametrised layer re-initialised (seeded; the caller's random state
    untouched). A small model keeps its copy for the next call with the same seed (one per model object, gone with
    it): copying and re-initialising take about 9 ms on the embedded models, a tenth of two one-pass maps, while a
    large model's copy would double its memory to save a few percent of its seconds-long maps."""
    kept = _kept_copies.get(model)
    if kept is not None and kept[0] == seed:
        return kept[1]
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(RESEED + seed)
        for _, module in _parametrised_layers(clone):
            module.reset_parameters()
    if sum(p.numel() * p.element_size() for p in model.parameters()) <= KEEP_COPY_BYTES:
        _kept_copies[model] = (seed, clone)
    return clone


def sanity_checks(model: nn.Module, x: torch.Tensor, method: str, saliency: torch.Tensor, target: int,
                  seed: int = 0, **params) -> dict[str, float]:
    """The two sanity values of ``METRICS`` for one map of ``method`` (two more maps, nothing else):
    ``sanity_model``, its Spearman ρ with the map of a copy of the model with every layer re-initialised (the end
    of the cascade), and ``sanity_reversed``, its ρ with the map of the clip played backwards (put back in the
    clip's frame order). Near 1: the map does not depend on the model, or on the order of the frames."""
    from explainers import explain

    destroyed = explain(_reinitialised(model, seed), x, method, target=target, seed=seed, **params).saliency
    backwards = explain(model, x.flip(2), method, target=target, seed=seed, **params).saliency.flip(0)
    reference = ranks(saliency)
    return {"sanity_model": rank_correlation(reference, ranks(destroyed)),
            "sanity_reversed": rank_correlation(reference, ranks(backwards))}


SENSITIVITY_RADIUS, SENSITIVITY_SAMPLES = 0.02, 10     # Captum's defaults: L∞ radius (normalised units), draws


def max_sensitivity(model: nn.Module, x: torch.Tensor, method: str, saliency: torch.Tensor, target: int,
                    samples: int = SENSITIVITY_SAMPLES, radius: float = SENSITIVITY_RADIUS, seed: int = 0,
                    **params) -> float:
    """Max-sensitivity (Yeh et al. 2019) of one map of ``method``: max over ``samples`` draws of uniform noise δ
    in the L∞ ball of ``radius`` (seeded) of ‖S(x + δ) − S(x)‖ / ‖S(x)‖, Frobenius norms (‖S(x)‖ = 0 counts as
    1). Every map explains ``target`` with the same ``seed`` and ``params``, so only the clip changes. Lower is
    better; a map that ignores the clip (``random``, ``centre``) scores 0. Hand-written, equal to Captum's
    ``sensitivity_max`` with the same noise (a test), for the reason ``infidelity`` is. Cost: ``samples`` maps."""
    from explainers import explain

    gen = torch.Generator().manual_seed(seed)
    reference = saliency.double()
    norm = float(reference.norm()) or 1.0
    worst = 0.0
    for _ in range(samples):
        noise = (torch.rand(x.shape, generator=gen) * 2 - 1) * radius
        moved = explain(model, x + noise.to(x), method, target=target, seed=seed, **params).saliency
        worst = max(worst, float((moved.double() - reference).norm()) / norm)
    return worst
