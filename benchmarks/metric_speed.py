"""Speed of the batched insertion/deletion metric against a naive loop (one forward per step, as in RISE's
reference evaluation), side by side in one run, with the largest difference between their curves; the whole metric
pass of one map (insertion + deletion + S50/S75) against the time of its forwards alone, in the same batches; then
the batched curves at ``precision="bf16"`` against fp32, and on the model with its batch norms folded into its
convolutions (``zoo.architectures.batchnorms_folded``, as the app scores) against the model itself; ROAD (the same
number of forwards, plus the imputation) against insertion/deletion; the sanity checks of a Grad-CAM map against
the two Grad-CAM maps they need (the copy and re-initialisation of the model are the rest), on the model's first
check (which makes the copy) and on later ones (which reuse it).

    python -m benchmarks.metric_speed [--models synth-r2plus1d-small synth-cnn-lstm] [--threads 2] [--batch 16]
"""
from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

from benchmarks.timing import best_of
from explainers import explain
from explainers.device import configure_cpu
from explainers.metrics import blurred, insertion_deletion, road, saliency_metric, sanity_checks, unit_ranks
from zoo.architectures import batchnorms_folded
from zoo.models import load_model
from zoo.synthetic import make_clip
from zoo.video import preprocess


def naive_curves(model, x: torch.Tensor, saliency: torch.Tensor, target: int, steps: int = 28) -> dict[str, np.ndarray]:
    """The reference: every step's clip built and forwarded on its own."""
    rank = unit_ranks(saliency, "voxel")
    counts = torch.round(torch.linspace(0, rank.numel(), steps + 1)).long()
    start = blurred(x)
    out = {"insertion": [], "deletion": []}
    with torch.inference_mode():
        for k in counts:
            kept = (rank < k).to(x.dtype)[None, None]
            out["insertion"].append(float(model(start * (1 - kept) + x * kept).softmax(-1)[0, target]))
            out["deletion"].append(float(model(x * (1 - kept)).softmax(-1)[0, target]))
    return {k: np.array(v) for k, v in out.items()}


def forwards_alone(model, x: torch.Tensor, batch: int, steps: int = 28) -> None:
    """The model work of one metric pass and nothing else: 2 × (steps + 1) clips in batches of ``batch``, then the
    saliency metric's 2 clips in one batch."""
    with torch.inference_mode():
        for n in [min(batch, 2 * (steps + 1) - i) for i in range(0, 2 * (steps + 1), batch)] + [2]:
            model(x.expand(n, -1, -1, -1, -1).contiguous())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["synth-r2plus1d-small", "synth-cnn-lstm"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    configure_cpu(args.threads)
    print(f"{args.threads} threads, batch {args.batch}, best of {args.repeats}; 2 × 29 clips per map")
    for card_id in args.models:
        model = load_model(card_id)
        clip = make_clip(1_000_004)
        x, _ = preprocess(clip.video, model.input_spec)
        e = explain(model, x, "grad_cam", target=clip.label)
        naive_s, naive = best_of(lambda: naive_curves(model, x, e.saliency, clip.label), args.repeats)
        ours_s, ours = best_of(lambda: insertion_deletion(model, x, e.saliency, clip.label, max_batch=args.batch),
                             args.repeats)
        diff = max(float(np.abs(ours[k].probs - naive[k]).max()) for k in naive)
        full_s, _ = best_of(lambda: (insertion_deletion(model, x, e.saliency, clip.label, max_batch=args.batch),
                                   saliency_metric(model, x, e.saliency, clip.label)), args.repeats)
        alone_s, _ = best_of(lambda: forwards_alone(model, x, args.batch), args.repeats)
        bf16_s, bf16 = best_of(lambda: insertion_deletion(model, x, e.saliency, clip.label, max_batch=args.batch,
                                                        precision="bf16"), args.repeats)
        bf16_diff = max(float(np.abs(ours[k].probs - bf16[k].probs).max()) for k in naive)
        folded = batchnorms_folded(model)
        folded_s, fold = best_of(lambda: insertion_deletion(folded, x, e.saliency, clip.label, max_batch=args.batch),
                                 args.repeats)
        fold_diff = max(float(np.abs(ours[k].probs - fold[k].probs).max()) for k in naive)
        road_s, _ = best_of(lambda: road(model, x, e.saliency, clip.label, max_batch=args.batch), args.repeats)
        fresh = iter([copy.deepcopy(model) for _ in range(args.repeats)])        # each copy's first sanity check
        first_s, _ = best_of(lambda: sanity_checks(next(fresh), x, "grad_cam", e.saliency, clip.label), args.repeats)
        sanity_s, _ = best_of(lambda: sanity_checks(model, x, "grad_cam", e.saliency, clip.label), args.repeats,
                              warmup=1)
        maps_s, _ = best_of(lambda: [explain(model, v, "grad_cam", target=clip.label) for v in (x, x.flip(2))],
                            args.repeats)
        print(f"{card_id}: naive loop {naive_s:.2f} s, batched {ours_s:.2f} s, speed-up {naive_s / ours_s:.2f}×; "
              f"max |Δp| between the curves {diff:.1e}; batched bf16 {bf16_s:.2f} s, {ours_s / bf16_s:.2f}× fp32, "
              f"max |Δp| {bf16_diff:.1e}; batch norms folded {folded_s:.2f} s, {ours_s / folded_s:.2f}× unfolded, "
              f"max |Δp| {fold_diff:.1e}; metric pass (insertion + deletion + S50/S75) {full_s:.2f} s against "
              f"its 60 forwards alone {alone_s:.2f} s: {full_s / alone_s:.2f}×; ROAD {road_s:.2f} s, "
              f"{road_s / ours_s:.2f}× insertion/deletion; sanity checks {sanity_s * 1e3:.0f} ms "
              f"against their two maps {maps_s * 1e3:.0f} ms: {sanity_s / maps_s:.2f}× (the first on a model "
              f"{first_s * 1e3:.0f} ms: {first_s / maps_s:.2f}×)")


if __name__ == "__main__":
    main()
