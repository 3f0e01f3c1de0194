"""The command line: ``videoxai COMMAND [ARGS]``; ``videoxai COMMAND --help`` describes each command.

Each command is a ``main(argv, prog)`` function in the module that owns the work, imported only when its command
runs, so ``videoxai models`` loads neither the app nor the benchmark.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {                     # name: (module, function, what it does)
    "models": ("zoo.cli", "models", "list the model cards"),
    "predict": ("zoo.cli", "predict", "top-k predictions of a model for a clip"),
    "export": ("zoo.cli", "export", "an embedded model as a Hub repository folder, optionally pushed"),
    "explain": ("analysis", "main", "explain a clip with one or more methods: overlays, maps, metrics"),
    "benchmark": ("benchmarks.faithfulness", "main", "methods × models × clips → the papers' tables (resumable)"),
    "synth": ("zoo.synthetic", "main", "render SynthActions-10 clips as MP4 with their ground truth"),
    "accuracy": ("zoo.training.accuracy", "main", "top-1 of a model on a SynthActions-10 split"),
    "train": ("zoo.training.train", "main", "train the embedded models on SynthActions-10"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="videoxai", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Explain video classifiers: where and when the model looked.",
        epilog="commands:\n" + "\n".join(f"  {name:10s} {help}" for name, (_, _, help) in COMMANDS.items()))
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments (see COMMAND --help)")
    args = parser.parse_args(argv)
    module, function, _ = COMMANDS[args.command]
    run = getattr(importlib.import_module(module), function)
    return run(args.args, prog=f"videoxai {args.command}")


if __name__ == "__main__":
    sys.exit(main())
