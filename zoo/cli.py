"""The zoo's commands: ``videoxai models`` (the model cards), ``videoxai predict CLIP`` (top-k predictions) and
``videoxai export`` (an embedded model as a Hub repository, optionally pushed)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from zoo.cards import list_cards, load_card
from zoo.models import ModelLoadError, load_model
from zoo.video import VideoError, prepare_clip


def json_object(text: str) -> dict:
    """An argparse type for ``--params``: a JSON object, or a message that says what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object of name: value is needed, e.g. '{{\"steps\": 16}}', "
                                         f"got {text!r}")
    return value


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


def export(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Write an embedded model as a Hub-ready folder; with ``--push REPO``, upload it and print the commit."""
    from zoo.hub import export_model, push_folder

    parser = argparse.ArgumentParser(prog=prog, description="Write an embedded model as a Hub repository folder "
                                     "(config.json, model.safetensors, README.md) and optionally push it.")
    parser.add_argument("--model", required=True, help="an embedded model's card id")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--push", metavar="REPO_ID", help="upload the folder to this Hub repository")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    args = parser.parse_args(argv)
    try:
        folder = export_model(args.model, args.out)
    except (KeyError, ValueError) as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 1
    print(f"wrote {folder}")
    if args.push:
        token = os.environ.get("HF_TOKEN")
        commit = push_folder(folder, args.push, token=token, private=args.private)
        print(f"pushed {args.push} at commit {commit}; pin it in the model's card as source.revision")
    return 0
