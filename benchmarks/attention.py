"""Cost of the attention family next to one pass of the model and next to Grad-CAM, in one run.

    python -m benchmarks.attention [--models videomae-base timesformer-base] [--threads 2] [--repeats 3]

For each model and one clip it times (best of ``--repeats``, batch 1, CPU): one forward as the model runs by
default (SDPA attention where transformers has it, under ``torch.inference_mode``), one forward + backward to the
input, then raw attention, attention rollout, gradient-weighted rollout, Chefer's relevance and Grad-CAM through
``explain``. The ratios are method / forward for the forward-only methods and method / (forward + backward) for
the others (targets: ≤ 1.2 and ≤ 1.5). ``videomae-base`` and ``timesformer-base`` are random-weight models of
the Kinetics checkpoints' shapes at 16×224×224 (12 blocks, width 768, 12 heads); any other name is a zoo card
(e.g. ``hf-vivit-b-k400`` where its weights are cached), at its card's input size.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.timing import best_of, forward_backward
from explainers import explain
from explainers.device import configure_cpu
from zoo.cards import card_from_dict
from zoo.models import VideoClassifier, load_model, wrap_transformer

METHODS = ("attention", "attention_rollout", "grad_rollout", "chefer", "grad_cam")
FORWARD_ONLY = {"attention", "attention_rollout"}


def base_shaped(kind: str) -> VideoClassifier:
    """A random-weight VideoMAE-B or TimeSformer-B at 16×224×224 (400 classes), wrapped like a Hub model."""
    import transformers as tf

    torch.manual_seed(0)
    if kind == "videomae-base":
        net, layer = tf.VideoMAEForVideoClassification(tf.VideoMAEConfig(num_labels=400)), "videomae.encoder.layer.-1"
    else:
        net, layer = (tf.TimesformerForVideoClassification(tf.TimesformerConfig(num_frames=16, num_labels=400)),
                      "timesformer.encoder.layer.-2")
    card = card_from_dict({"id": kind, "family": "video_transformer", "license": "random weights",
                           "source": {"kind": "transformers", "repo": "none", "revision": "none"},
                           "input": {"frames": 16, "size": [224, 224]}, "target_layers": [layer]})
    return wrap_transformer(net.eval(), card)


def costs(model: VideoClassifier, repeats: int) -> dict[str, float]:
    """Seconds of one forward, one forward + backward, and each method, on one random clip."""
    spec = model.input_spec
    x = torch.randn(1, 3, spec.frames, *spec.size)

    with torch.inference_mode():
        model(x)
        seconds = {"forward": best_of(lambda: model(x), repeats)[0]}
    seconds["forward + backward"] = best_of(lambda: forward_backward(model, x), repeats, warmup=1)[0]
    for method in METHODS:
        explain(model, x, method)
        seconds[method] = best_of(lambda: explain(model, x, method), repeats)[0]
    return seconds


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["videomae-base", "timesformer-base"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    configure_cpu(args.threads)
    rows = ["| model | forward | forward + backward | " + " | ".join(METHODS) + " |",
            "|---|---|---|" + "---|" * len(METHODS)]
    for name in args.models:
        model = base_shaped(name) if name in ("videomae-base", "timesformer-base") else load_model(name)
        s = costs(model, args.repeats)
        cells = [f"{s[m]:.3f} s ({s[m] / s['forward' if m in FORWARD_ONLY else 'forward + backward']:.2f}×)"
                 for m in METHODS]
        rows.append(f"| {name} | {s['forward']:.3f} s | {s['forward + backward']:.3f} s | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    print(f"\n{args.threads} threads, best of {args.repeats}; in brackets: / forward for raw attention and rollout, "
          f"/ (forward + backward) for the others\n")
    print("\n".join(rows))
    return rows


if __name__ == "__main__":
    main()
