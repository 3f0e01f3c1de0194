"""Speed of every explainer against its own pass-count limit, and against Captum / pytorch-grad-cam, in one run.

    python -m benchmarks.speed [--models synth-r2plus1d-small tv-r2plus1d-18] [--threads 2] [--device cuda]

For each model (16×112×112 clips) it measures the per-clip time of one batched forward (batch = ``--batch``) and
of one forward+backward, then runs every method (``fast`` preset where there is one) and prints wall time, passes,
and ratio = wall / limit, where limit = forwards × t_forward + backwards × t_forward+backward. Side by side on the
same model and clip: Captum's ``Occlusion`` (both sides at their best batch of 1/4/16) with the same 8×16×16
occluder and the ``fast`` strides (4, 16, 16) (the default (2, 8, 8) costs ~13 min per Captum run on r2plus1d_18),
and pytorch-grad-cam's ``GradCAM`` on the same layer: time ratios and the largest difference of the normalised maps.
Then each method that takes ``precision`` (the forward-only ones and the EP family) at bf16 next to fp32 on a
SynthActions-10 test clip (on noise the probability changes are as small as bf16's rounding): speed-up, largest map
difference, Spearman.
``tv-r2plus1d-18`` runs with random weights (the Kinetics weights are not downloaded). On a GPU every timer
waits for the device (``explain`` returns its maps on the CPU, the pass timings synchronise explicitly).
"""
from __future__ import annotations

import argparse
import json

import torch

from benchmarks.timing import best_of, forward_backward
from explainers import REGISTRY, explain
from explainers.device import configure_cpu
from explainers.maps import normalise
from explainers.metrics import spearman
from zoo.cards import CARDS_DIR, card_from_dict
from zoo.cli import json_object
from zoo.models import VideoClassifier, load_model
from zoo.synthetic import make_clip
from zoo.video import preprocess


def _model(card_id: str, device: str) -> VideoClassifier:
    raw = json.loads((CARDS_DIR / f"{card_id}.json").read_text())
    if raw["source"]["kind"] == "torchvision":
        raw["source"]["weights"] = None
        raw["input"]["size"] = [112, 112]
    return load_model(card_from_dict(raw), device)


def per_clip_costs(model: VideoClassifier, x: torch.Tensor, batch: int) -> tuple[float, float]:
    """Seconds per clip of a batched forward, and of one forward+backward to the input."""
    xs = x.expand(batch, -1, -1, -1, -1).contiguous()
    with torch.inference_mode():
        model(xs)
        fwd = best_of(lambda: model(xs))[0] / batch

    return fwd, best_of(lambda: forward_backward(model, x), warmup=1)[0]


def _preset_and_overrides(method: str, params: dict | None) -> tuple[str | None, dict]:
    """The ``fast`` preset where the method has one, and those of ``params`` that the method takes."""
    spec = REGISTRY[method]
    return ("fast" if "fast" in spec.presets else None,
            {k: v for k, v in (params or {}).items() if any(p.name == k for p in spec.params)})


def _timed(run):
    """``run()`` and its wall time; a run under 10 s is timed again (the first one warms up)."""
    wall, out = best_of(run, 1)
    if wall < 10:
        wall, out = best_of(run, 1)
    return out, wall


def bench_methods(model: VideoClassifier, x: torch.Tensor, fwd: float, fb: float, batch: int,
                  methods: list[str], params: dict | None = None) -> list[dict]:
    """Time each method once after a warm-up run; a method whose first run took over 10 s is not repeated.
    ``params`` override the preset for every method that has them (e.g. fewer EP iterations on a big model)."""
    rows = []
    for method in methods:
        preset, own = _preset_and_overrides(method, params)
        try:
            e, wall = _timed(lambda: explain(model, x, method, preset=preset, max_batch=batch, **own))
        except ValueError as error:
            rows.append({"method": method, "note": str(error).split(";")[0]})
            continue
        limit = (e.forward_passes - e.backward_passes) * fwd + e.backward_passes * fb
        label = ", ".join([preset or "default"] + [f"{k}={v}" for k, v in own.items()])
        rows.append({"method": method, "preset": label, "seconds": wall, "forwards": e.forward_passes,
                     "backwards": e.backward_passes, "limit": limit, "ratio": wall / limit if limit else float("nan")})
    return rows


def compare_captum_occlusion(model: VideoClassifier, x: torch.Tensor) -> dict:
    """Both sides at their best of 1, 4 and 16 clips per forward (batching helps or hurts by model on a CPU)."""
    from captum.attr import Occlusion

    target = int(model(x).argmax())
    window, strides = (8, 16, 16), REGISTRY["occlusion"].presets["fast"]["strides"]
    prob = lambda inp: model(inp).softmax(-1)

    def ours_run(batch: int):
        return explain(model, x, "occlusion", target=target, score="prob", max_batch=batch, window=window,
                       strides=strides)

    def captum_run(batch: int):
        with torch.inference_mode():
            return Occlusion(prob).attribute(x, sliding_window_shapes=(3, *window), strides=(3, *strides),
                                             baselines=0, target=target, perturbations_per_eval=batch)

    def best(run) -> tuple[float, int, object]:
        """Fastest batch size; each timed on its second run (the first builds oneDNN kernels for new shapes)."""
        timed = [(*best_of(lambda: run(batch), 1, warmup=1), batch) for batch in (1, 4, 16)]
        seconds, result, batch = min(timed, key=lambda r: r[0])
        return seconds, batch, result

    t_ours, batch, ours = best(ours_run)
    t_ref, per_eval, ref = best(captum_run)
    ref_map = normalise(ref[0].sum(0))           # the same windows and map definition (docs/methods.md §12)
    return {"ours_s": t_ours, "ours_batch": batch, "captum_s": t_ref, "captum_per_eval": per_eval,
            "time_ratio": t_ours / t_ref, "ours_forwards": ours.forward_passes,
            "max_abs_diff": float((ours.saliency - ref_map).abs().max()),
            "spearman": spearman(ours.saliency, ref_map)}


def compare_pytorch_grad_cam(model: VideoClassifier, x: torch.Tensor) -> dict:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    target = int(model(x).argmax())
    layer = model.layer(model.target_layers[0])
    ours = explain(model, x, "grad_cam", target=target)
    t_ours = best_of(lambda: explain(model, x, "grad_cam", target=target))[0]
    xg = x.clone().requires_grad_(True)  # our models' parameters are frozen: the graph needs a leaf with grad
    with GradCAM(model=model, target_layers=[layer]) as cam:
        ref = torch.from_numpy(cam(input_tensor=xg, targets=[ClassifierOutputTarget(target)]))[0]
        t_ref = best_of(lambda: cam(input_tensor=xg, targets=[ClassifierOutputTarget(target)]))[0]
    return {"ours_s": t_ours, "pgc_s": t_ref, "time_ratio": t_ours / t_ref,
            "max_abs_diff": float((ours.saliency - normalise(ref)).abs().max())}


def compare_precision(model: VideoClassifier, x: torch.Tensor, batch: int, methods: list[str],
                      params: dict | None = None) -> list[dict]:
    """The methods that take ``precision`` in fp32 and bf16 side by side, timed as in ``bench_methods``."""
    rows = []
    for method in methods:
        preset, own = _preset_and_overrides(method, params)
        own.pop("precision", None)
        (a, ta), (b, tb) = (_timed(lambda: explain(model, x, method, preset=preset, max_batch=batch, precision=p,
                                                   **own)) for p in ("fp32", "bf16"))
        rows.append({"method": method, "fp32_s": ta, "bf16_s": tb, "speedup": ta / tb,
                     "max_abs_diff": float((a.saliency - b.saliency).abs().max()),
                     "spearman": spearman(a.saliency, b.saliency)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["synth-r2plus1d-small", "tv-r2plus1d-18"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=list(REGISTRY), choices=list(REGISTRY))
    parser.add_argument("--params", type=json_object, default={},
                        help='JSON overrides for the methods that take them, e.g. \'{"iterations": 10}\'')
    parser.add_argument("--skip-references", action="store_true")
    parser.add_argument("--skip-precision", action="store_true", help="no bf16-vs-fp32 comparison")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    args = parser.parse_args(argv)
    for key in args.params:
        if not any(p.name == key for m in args.methods for p in REGISTRY[m].params):
            parser.error(f"--params: none of the methods takes {key!r}")
    for method in args.methods:
        try:
            REGISTRY[method].resolve(*_preset_and_overrides(method, args.params))
        except (TypeError, ValueError) as error:
            parser.error(f"--params: {error}")
    configure_cpu(args.threads)
    torch.manual_seed(0)
    for card_id in args.models:
        model = _model(card_id, args.device)
        x = torch.randn(1, 3, 16, 112, 112).to(args.device)
        fwd, fb = per_clip_costs(model, x, args.batch)
        where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"{args.threads} threads"
        print(f"\n## {card_id} — 16×112×112, {where}: forward {fwd * 1e3:.1f} ms/clip "
              f"(batch {args.batch}), forward+backward {fb * 1e3:.1f} ms\n")
        print("| method | preset | seconds | forwards | backwards | limit s | ratio |\n|---|---|---|---|---|---|---|")
        for r in bench_methods(model, x, fwd, fb, args.batch, args.methods, args.params):
            if "note" in r:
                print(f"| {r['method']} | – | – | – | – | – | n/a: {r['note']} |")
            else:
                print(f"| {r['method']} | {r['preset']} | {r['seconds']:.3f} | {r['forwards']} | {r['backwards']} | "
                      f"{r['limit']:.3f} | {r['ratio']:.2f} |")
        with_precision = [m for m in args.methods if any(p.name == "precision" for p in REGISTRY[m].params)]
        if with_precision and not args.skip_precision:
            print("\n| method | fp32 s | bf16 s | speed-up | max abs diff of maps | Spearman |\n"
                  "|---|---|---|---|---|---|")
            clip = preprocess(make_clip(1_000_004).video, model.input_spec)[0].to(args.device)
            for r in compare_precision(model, clip, args.batch, with_precision, args.params):
                print(f"| {r['method']} | {r['fp32_s']:.2f} | {r['bf16_s']:.2f} | {r['speedup']:.2f}× | "
                      f"{r['max_abs_diff']:.4f} | {r['spearman']:.4f} |")
        if not args.skip_references:
            occ = compare_captum_occlusion(model, x)
            print(f"\nOcclusion 8×16×16 / (4,16,16), {occ['ours_forwards']} forwards: ours {occ['ours_s']:.2f} s "
                  f"(max_batch={occ['ours_batch']}), Captum "
                  f"{occ['captum_s']:.2f} s (perturbations_per_eval={occ['captum_per_eval']}): ratio "
                  f"{occ['time_ratio']:.2f}; max |Δ| of normalised maps {occ['max_abs_diff']:.1e}, Spearman "
                  f"{occ['spearman']:.4f}")
            gc = compare_pytorch_grad_cam(model, x)
            print(f"Grad-CAM: ours {gc['ours_s'] * 1e3:.0f} ms, pytorch-grad-cam {gc['pgc_s'] * 1e3:.0f} ms: ratio "
                  f"{gc['time_ratio']:.2f}; max |Δ| of normalised maps {gc['max_abs_diff']:.4f}")


if __name__ == "__main__":
    main()
