"""Decoding the sampled frames of a clip: ``zoo.video.read_clip`` (PyAV, seeking to the keyframe before each sampled
frame, every decoded frame checked for errors) against decord's random access (the reader the app used before,
which resizes while decoding but passes over decoding errors in silence), side by side on the same files, with the
largest difference between the two readers' frames.

    python -m benchmarks.decoding [--repeats 5] [--frames 16] [--clips example bunny 720p long]

Needs decord (requirements-bench.txt). The long clips are written to a temporary folder first (x264, its default
keyframe interval of 250 frames).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.timing import best_of
from zoo.video import DecodeLimits, decode_size, probe, read_clip, sample_indices, write_mp4

ROOT = Path(__file__).resolve().parent.parent


def moving_noise(frames: int, height: int, width: int) -> np.ndarray:
    """Smooth noise that drifts a pixel per frame: compressible, with real motion for the encoder to follow."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height // 8 + 1, (width + frames) // 8 + 1, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(base, 8, 0), 8, 1)
    return np.stack([big[:height, t:t + width] for t in range(frames)])


CLIPS = {   # key: (row name, a function of a scratch folder that gives the file)
    "example": ("example (112², 16 frames)", lambda _: ROOT / "assets/examples/synth_grow_1000004.mp4"),
    "bunny": ("bunny (320×180, 10 s)", lambda _: ROOT / "assets/examples/real/big_buck_bunny_320x180.mp4"),
    "720p": ("720p, 60 s at 25 fps",
             lambda folder: write_mp4(folder / "720p.mp4", moving_noise(1500, 720, 1280), fps=25)),
    "long": ("360p, 10 min at 10 fps",
             lambda folder: write_mp4(folder / "long.mp4", moving_noise(6000, 360, 640), fps=10)),
}


def decord_frames(path: Path, count: int) -> np.ndarray:
    import decord

    info = probe(path)
    width, height = decode_size(info, DecodeLimits())
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=1)
    return reader.get_batch(sample_indices(0, len(reader), count)).asnumpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        clips = {CLIPS[key][0]: CLIPS[key][1](Path(folder)) for key in args.clips}
        print(f"{args.frames} sampled frames, best of {args.repeats}\n")
        print("| clip | read_clip ms | decord ms | read_clip / decord | max mean abs Δ per frame |")
        print("|---|---|---|---|---|")
        for name, path in clips.items():
            ours_s, clip = best_of(lambda p=path: read_clip(p, args.frames), args.repeats, warmup=1)
            theirs_s, frames = best_of(lambda p=path: decord_frames(p, args.frames), args.repeats, warmup=1)
            delta = np.abs(clip.frames.astype(np.int16) - frames.astype(np.int16)).mean((1, 2, 3)).max()
            print(f"| {name} | {1000 * ours_s:.1f} | {1000 * theirs_s:.1f} | {ours_s / theirs_s:.2f}× | "
                  f"{delta:.2f} |")


if __name__ == "__main__":
    main()
