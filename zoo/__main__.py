"""Command line for the zoo: ``python -m zoo list`` and ``python -m zoo predict CLIP [--model ID]``."""
from __future__ import annotations

import argparse
import os
import sys

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
    args = parser.parse_args(argv)
    if args.command == "list":
        for card_id in list_cards():
            card = load_card(card_id)
            print(f"{card_id:28s} {card.kind:12s} {card.name}")
        return 0
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


if __name__ == "__main__":
    sys.exit(main())
