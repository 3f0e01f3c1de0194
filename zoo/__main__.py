"""Command line for the zoo: ``python -m zoo list``, ``python -m zoo predict CLIP [--model ID]`` and
``python -m zoo accuracy [--model ID] [--split val --first 300 --count 1000]`` (top-1 on SynthActions-10)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from zoo.cards import list_cards, load_card  # noqa: E402
from zoo.models import ModelLoadError, load_model  # noqa: E402
from zoo.video import VideoError, prepare_clip  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the model cards")
    predict = sub.add_parser("predict", help="top-k predictions of a model for a clip")
    predict.add_argument("clip")
    predict.add_argument("--model", default="synth-r2plus1d-small")
    predict.add_argument("--start", type=float)
    predict.add_argument("--end", type=float)
    predict.add_argument("-k", type=int, default=5)
    accuracy = sub.add_parser("accuracy", help="top-1 of a model on clips of a SynthActions-10 split")
    accuracy.add_argument("--model", default="synth-r2plus1d-small")
    accuracy.add_argument("--weights", type=Path, help="an embedded model's weights to use instead of the shipped ones")
    accuracy.add_argument("--split", choices=("val", "test"), default="test")
    accuracy.add_argument("--first", type=int, default=0, help="skip this many clips of the split")
    accuracy.add_argument("--count", type=int, default=None, help="clips (default: the test split's size)")
    accuracy.add_argument("--threads", type=int, default=2, help="torch threads and rendering processes")
    args = parser.parse_args(argv)
    if args.command == "list":
        for card_id in list_cards():
            card = load_card(card_id)
            print(f"{card_id:28s} {card.kind:12s} {card.name}")
        return 0
    if args.command == "accuracy":
        return _accuracy(args)
    try:
        model = load_model(args.model)
        prepared = prepare_clip(args.clip, model.input_spec, args.start, args.end)
    except (VideoError, ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for warning in prepared.clip.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for label, p in model.top_k(prepared.x, args.k):
        print(f"{p:7.2%}  {label}")
    return 0


def _accuracy(args: argparse.Namespace) -> int:
    from zoo.cpu import configure_cpu
    from zoo.models import load_embedded_weights
    from zoo.synthetic import CLASSES
    from zoo.train import split_hits

    configure_cpu(args.threads)
    try:
        model = load_model(args.model)
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.weights is not None:
        try:
            load_embedded_weights(model.net, args.weights)
        except (OSError, RuntimeError) as e:
            print(f"error: cannot use {args.weights} as weights of {args.model}: {e}", file=sys.stderr)
            return 1
    seeds, hits, labels = split_hits(model, args.split, args.first, args.count, args.threads)
    top1 = hits.mean()
    print(f"{args.model}{f' ({args.weights})' if args.weights else ''} on {args.split} clips {seeds[0]}..{seeds[-1]} "
          f"({len(seeds)} hard): top-1 {top1:.1%} ± {(top1 * (1 - top1) / len(seeds)) ** 0.5:.1%} (standard error)")
    print("  ".join(f"{name} {hits[labels == k].mean():.0%}" for k, name in enumerate(CLASSES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
