"""Command line for the zoo: ``python -m zoo list``, ``python -m zoo predict CLIP [--model ID]`` and
``python -m zoo accuracy [--model ID] [--split val --first 300 --count 1000] [--record]`` (top-1 on SynthActions-10;
``--record`` writes the test split's numbers into the card's ``held_out`` section)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from zoo.cards import CARDS_DIR, list_cards, load_card  # noqa: E402
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
    accuracy.add_argument("--record", action="store_true",
                          help="write the result into the card's held_out section (the whole test split only)")
    accuracy.add_argument("--card-dir", type=Path, default=CARDS_DIR, help="with --record: the cards' folder")
    args = parser.parse_args(argv)
    if args.command == "accuracy" and args.record and (args.split, args.first, args.count) != ("test", 0, None):
        parser.error("--record measures the whole test split: leave out --split, --first and --count")
    if args.command == "list":
        for card_id in list_cards():
            card = load_card(card_id)
            print(f"{card_id:28s} {card.kind:12s} {card.name}")
        return 0
    if args.command == "accuracy":
        return _accuracy(args, "python -m zoo " + " ".join(sys.argv[1:] if argv is None else argv))
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


def _accuracy(args: argparse.Namespace, command: str) -> int:
    import json

    import torch

    from zoo.cpu import configure_cpu
    from zoo.models import load_embedded_weights
    from zoo.synthetic import CLASSES
    from zoo.train import held_out

    configure_cpu(args.threads)
    try:
        if load_card(args.model).labels != CLASSES:
            print(f"error: {args.model} does not classify SynthActions-10's actions", file=sys.stderr)
            return 1
        model = load_model(args.model)
    except (KeyError, ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.weights is not None:
        try:
            load_embedded_weights(model.net, args.weights)
        except (OSError, RuntimeError) as e:
            print(f"error: cannot use {args.weights} as weights of {args.model}: {e}", file=sys.stderr)
            return 1
    mean, std = torch.tensor(model.input_spec.mean), torch.tensor(model.input_spec.std)
    result = held_out(model, mean, std, args.split, args.first, args.count, args.threads)
    top1, n = result["top1"], result["clips"]
    print(f"{args.model}{f' ({args.weights})' if args.weights else ''} on {result['dataset']} {args.split} clips "
          f"{result['seeds']} ({n} hard): top-1 {top1:.1%} ± {(top1 * (1 - top1) / n) ** 0.5:.1%} (standard error), "
          f"frames shuffled {result['top1_shuffled_frames']:.1%}")
    print("  ".join(f"{name} {p:.0%}" for name, p in result["top1_per_class"].items()))
    if args.record:
        path = args.card_dir / f"{args.model}.json"
        raw = json.loads((path if path.exists() else CARDS_DIR / path.name).read_text())
        raw["held_out"] = {**result, "measured_by": command}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(raw, indent=2) + "\n")
        print(f"recorded in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
