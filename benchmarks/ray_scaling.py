"""The Ray engine's speed-up on this machine: the same rows with one worker, then with two (one thread each).

    python -m benchmarks.ray_scaling [--clips 10] [--methods occlusion integrated_gradients grad_cam]

Starts a local cluster with 2 CPUs, then runs ``benchmarks.ray_engine.run`` twice into fresh folders, each time
from nothing (the actors start, load the model, compute every row): wall time, rows per minute and the ratio.
Then projects the cost of 20,000 clips × these methods from the one-worker run's seconds per clip: one CPU core
per worker, and on ``--gpu-seconds`` per clip per GPU where a GPU's per-clip time is known.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks import ray_engine

CLIPS_AT_SCALE = 20_000


def timed_run(workers: int, models: list[str], methods: list[str], clips: int, out: Path) -> tuple[float, int]:
    """(wall seconds, rows) of one run of every row into the empty folder ``out``."""
    start = time.perf_counter()
    rows = ray_engine.run(models, methods, clips, out, workers=workers, threads=1, log=lambda _: None)
    return time.perf_counter() - start, len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["synth-r2plus1d-small"])
    parser.add_argument("--methods", nargs="+", default=["occlusion", "integrated_gradients", "grad_cam"])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--gpu-seconds", type=float, default=None,
                        help="seconds per clip (all the methods and their metrics) on one GPU, for the projection")
    args = parser.parse_args(argv)
    ray_engine.connect(cpus=2)
    with tempfile.TemporaryDirectory() as folder:
        one, rows = timed_run(1, args.models, args.methods, args.clips, Path(folder) / "one")
        two, _ = timed_run(2, args.models, args.methods, args.clips, Path(folder) / "two")
    print(f"{rows} rows ({len(args.models)} models × {args.clips} clips × {len(args.methods)} methods)\n")
    print("| workers | wall s | rows / min |\n|---|---|---|")
    for workers, wall in ((1, one), (2, two)):
        print(f"| {workers} | {wall:.1f} | {rows / wall * 60:.1f} |")
    per_clip = one / (args.clips * len(args.models))
    print(f"\nspeed-up {one / two:.2f}×; one worker: {per_clip:.1f} s per clip for these methods")
    hours = CLIPS_AT_SCALE * per_clip / 3600
    print(f"{CLIPS_AT_SCALE:,} clips: {hours:,.0f} core-hours; on 64 cores {hours / 64:.1f} h")
    if args.gpu_seconds:
        gpu_hours = CLIPS_AT_SCALE * args.gpu_seconds / 3600
        print(f"{CLIPS_AT_SCALE:,} clips at {args.gpu_seconds} s per clip per GPU: {gpu_hours:,.0f} GPU-hours; "
              + ", ".join(f"{n} GPUs {gpu_hours / n:.1f} h" for n in (1, 8, 32)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
