"""``videoxai accuracy``: top-1 of a zoo model on SynthActions-10 (``--record`` writes the test split's numbers into
the card's ``held_out`` section)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from explainers.device import configure_cpu
from zoo.cards import CARDS_DIR, load_card
from zoo.models import ModelLoadError, load_embedded_weights, load_model
from zoo.synthetic import CLASSES
from zoo.training.train import held_out


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Top-1 of a model on clips of a SynthActions-10 split.")
    parser.add_argument("--model", default="synth-r2plus1d-small")
    parser.add_argument("--weights", type=Path, help="an embedded model's weights to use instead of the shipped ones")
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--first", type=int, default=0, help="skip this many clips of the split")
    parser.add_argument("--count", type=int, default=None, help="clips (default: the test split's size)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads and rendering processes")
    parser.add_argument("--record", action="store_true",
                        help="write the result into the card's held_out section (the whole test split only)")
    parser.add_argument("--card-dir", type=Path, default=CARDS_DIR, help="with --record: the cards' folder")
    args = parser.parse_args(argv)
    if args.record and (args.split, args.first, args.count) != ("test", 0, None):
        parser.error("--record measures the whole test split: leave out --split, --first and --count")
    command = shlex.join(["videoxai", "accuracy", *(sys.argv[2:] if argv is None else argv)])
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
