"""Denormal floats flushed to zero against kept, on the embedded models (``python -m benchmarks.denormals``).

Backward passes through a trained model produce gradients below 1.2e-38 (denormals), on which a CPU computes many
times slower; ``explainers.device.configure_cpu`` flushes them to zero. The setting belongs to a thread and is
inherited by the threads it starts, so each setting runs in a fresh process of its own (this module with
``--flush 0`` or ``1``). For each embedded model (trained weights) and three sets of clips, the first held-out
test clips (what the models were trained for), the bundled real footage (what they were not) and one clip of
seeded Gaussian noise (what ``benchmarks.attention`` times: far from anything seen, the softmax rows of a
transformer sit near 0 and 1), each process times a forward + backward to the input (the pass the gradient and
extremal-perturbation methods repeat; a forward alone makes no denormals) and the methods below through
``explain``, and saves the maps; the parent prints the time with denormals kept, flushed, the speed-up and the
largest difference between the two normalised maps.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.faithfulness import Clip, clips
from benchmarks.timing import best_of, forward_backward
from explainers import REGISTRY, explain
from explainers.device import configure_cpu
from zoo.models import load_model
from zoo.training.train import EMBEDDED_CARDS

METHODS = ("integrated_gradients", "chefer")
REAL = Path(__file__).resolve().parent.parent / "assets" / "examples" / "real"
CLIP_SETS = ("held-out", "real", "noise")


def measure(card: str, clip_set: str, count: int, repeats: int, folder: Path) -> dict[str, float]:
    """Seconds per clip (best of ``repeats``, averaged over the clips) of a forward + backward and each method that
    applies; the methods' maps are saved under ``folder``."""
    model = load_model(card)
    methods = [m for m in METHODS if REGISTRY[m].not_applicable(model) is None]
    spec = model.input_spec
    if clip_set == "noise":
        xs = [torch.randn(1, 3, spec.frames, *spec.size, generator=torch.Generator().manual_seed(0))]
    else:
        listed = clips(count) if clip_set == "held-out" else [Clip(f.name, path=str(f)) for f in REAL.glob("*.mp4")]
        xs = [clip.load(spec)[0] for clip in listed]
    seconds = dict.fromkeys(["forward + backward", *methods], 0.0)
    for i, x in enumerate(xs):
        seconds["forward + backward"] += best_of(lambda: forward_backward(model, x), repeats, warmup=1)[0]
        for method in methods:
            s, e = best_of(lambda: explain(model, x, method), repeats, warmup=1)
            seconds[method] += s
            torch.save(e.saliency, folder / f"{card}-{clip_set}-{method}-{i}.pt")
    return {what: s / len(xs) for what, s in seconds.items()}


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flush", type=int, choices=(0, 1), help=argparse.SUPPRESS)   # one setting's process
    parser.add_argument("--maps", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flush is not None:
        configure_cpu(args.threads, flush_denormal=bool(args.flush))
        print(json.dumps({f"{card} | {clip_set}": measure(card, clip_set, args.clips, args.repeats, Path(args.maps))
                          for card in EMBEDDED_CARDS.values() for clip_set in CLIP_SETS}))
        return []
    rows = ["| model | clips | pass or method | denormals kept | flushed | speed-up | max abs Δ map |",
            "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for flush in (0, 1):
            folder = Path(tmp) / str(flush)
            folder.mkdir()
            out = subprocess.run([sys.executable, "-m", "benchmarks.denormals", "--flush", str(flush), "--maps",
                                  str(folder), "--clips", str(args.clips), "--threads", str(args.threads),
                                  "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        for key, kept in runs[0].items():
            for what, s in kept.items():
                flushed = runs[1][key][what]
                maps = sorted((Path(tmp) / "0").glob(key.replace(" | ", "-") + f"-{what}-*.pt"))
                delta = max((float((torch.load(f) - torch.load(Path(tmp) / "1" / f.name)).abs().max()) for f in maps),
                            default=None)
                rows.append(f"| {key} | {what} | {s * 1000:.1f} ms | {flushed * 1000:.1f} ms | {s / flushed:.2f}× | "
                            + ("–" if delta is None else f"{delta:.1e}") + " |")
                print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
