"""The zoo's commands: ``videoxai models`` (the model cards) and ``videoxai predict CLIP`` (top-k predictions)."""
from __future__ import annotations

import argparse
import sys

from zoo.cards import list_cards, load_card
from zoo.models import ModelLoadError, load_model
from zoo.video import VideoError, prepare_clip


def models(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Print every model card: id, source kind and name, embedded models first."""
    argparse.ArgumentParser(prog=prog, description="List the model cards (embedded models first).").parse_args(argv)
    for card_id in list_cards():
        card = load_card(card_id)
        print(f"{card_id:28s} {card.kind:12s} {card.name}")
    return 0


def predict(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Print a model's top-k classes for a clip (or a segment of it)."""
    parser = argparse.ArgumentParser(prog=prog, description="Top-k predictions of a zoo model for a clip.")
    parser.add_argument("clip")
    parser.add_argument("--model", default="synth-r2plus1d-small")
    parser.add_argument("--start", type=float, help="segment start (s)")
    parser.add_argument("--end", type=float, help="segment end (s)")
    parser.add_argument("-k", type=int, default=5, help="how many classes")
    args = parser.parse_args(argv)
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
