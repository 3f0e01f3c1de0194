"""``explainers.maps.upsample`` (three products with each axis's interpolation matrix) against ``F.interpolate``'s
trilinear mode, on the shapes the explainers upsample (``python -m benchmarks.upsampling``).

Rows: a CAM or attention map of each model family grown to its clip, and one batch of RISE's masks (4 masks of a
5×8×8 grid grown to 20×128×128 before their random crops). Best of ``--repeats``, with the largest difference.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from benchmarks.timing import best_of
from explainers.device import configure_cpu
from explainers.maps import upsample

CASES = (("attention map, synth-videomae-small", (), (4, 7, 7), (16, 112, 112)),
         ("Grad-CAM, synth-r2plus1d-small", (), (8, 7, 7), (16, 112, 112)),
         ("attention map, VideoMAE-B", (), (8, 14, 14), (16, 224, 224)),
         ("RISE masks, one batch of 4", (4,), (5, 8, 8), (20, 128, 128)))


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    configure_cpu(args.threads)
    rows = ["| map | from | to | F.interpolate | separable | speed-up | max abs Δ |", "|---|---|---|---|---|---|---|"]
    for name, lead, coarse, size in CASES:
        v = torch.rand(*lead, *coarse, generator=torch.Generator().manual_seed(0))
        flat = v.reshape(-1, 1, *coarse)
        reference, ref = best_of(lambda: F.interpolate(flat, size=size, mode="trilinear", align_corners=False),
                                 args.repeats, warmup=1)
        ours, out = best_of(lambda: upsample(v, size), args.repeats, warmup=1)
        delta = float((out - ref.reshape(*lead, *size)).abs().max())
        rows.append(f"| {name} | {'×'.join(map(str, coarse))} | {'×'.join(map(str, size))} | "
                    f"{reference * 1000:.3f} ms | {ours * 1000:.3f} ms | {reference / ours:.1f}× | {delta:.1e} |")
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
