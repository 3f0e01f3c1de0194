"""The EP building blocks against their plain definitions, side by side (``python -m benchmarks.extremal_blocks``).

Times forward + backward of the three pieces an extremal-perturbation iteration runs besides the model, each
against the plain autograd form of its definition (docs/methods.md §1.1–1.3), on the masks of one ``fast`` EP-3D
iteration (3 areas × T frames): the smooth-max mask generator against ``(v · softmax(c·v)).sum`` over all
candidates at once, the blur pyramid against the sum of every level's hat-function weight, and the area loss
against a full sort. Prints milliseconds, the speed-up and the largest difference of outputs and gradients.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.timing import best_of
from explainers.device import configure_cpu
from explainers.extremal import BlurPyramid, MaskGenerator, area_loss


def plain_mask_generator(gen: MaskGenerator, seeds: torch.Tensor) -> torch.Tensor:
    """Padded masks of docs/methods.md §1.2 with every position × phase × candidate value held at once."""
    u = gen.candidates(seeds)                                              # R×K
    v = gen.weight[None] * u[:, None]                                      # R×Q×K
    return gen.assemble((v * torch.softmax(gen.coldness * v, 2)).sum(2), len(seeds))[1]


def plain_pyramid(pyramid: BlurPyramid, mask: torch.Tensor) -> torch.Tensor:
    """docs/methods.md §1.1: Σ_l max(0, 1 − |mask·(L−1) − l|) · level_l."""
    position = mask[:, None] * (len(pyramid.levels) - 1)
    return sum((1 - (position - level).abs()).clamp(min=0) * frames for level, frames in enumerate(pyramid.levels))


def sorted_area_loss(padded: torch.Tensor, keep: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """docs/methods.md §1.3: sort the (shuffled) mask values, mean squared distance to the 0…0 1…1 template."""
    values = padded.flatten(1)[:, perm].sort(-1).values
    template = torch.arange(values.shape[1]) >= values.shape[1] - keep[:, None]
    return (values - template.float()).pow(2).mean(1)


def _compare(ours, plain, inputs: torch.Tensor, repeats: int) -> dict:
    """Forward + backward of both to a fixed random output weight: seconds and largest differences."""
    def run(fn):
        x = inputs.detach().requires_grad_()
        out = fn(x)
        grad, = torch.autograd.grad((out * weight).sum(), x)
        return out.detach(), grad

    weight = torch.randn_like(ours(inputs.detach()))
    (o1, g1), (o2, g2) = run(ours), run(plain)
    return {"ours_ms": best_of(lambda: run(ours), repeats)[0] * 1e3,
            "plain_ms": best_of(lambda: run(plain), repeats)[0] * 1e3,
            "out_diff": float((o1 - o2).abs().max()), "grad_diff": float((g1 - g2).abs().max() / g2.abs().max())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--areas", type=int, default=3, help="masks per frame, as the `fast` preset's 3 areas")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    configure_cpu(args.threads)
    torch.manual_seed(0)
    t, size, scale = args.frames, args.size, args.size / 112
    gen = MaskGenerator((size, size), max(2, round(7 * scale)), 11 * scale)
    pyramid = BlurPyramid(torch.randn(1, 3, t, size, size), 8, 20 * scale)
    seeds = torch.rand(args.areas * t, *gen.seed_shape)
    masks = torch.rand(args.areas, t, size, size)
    padded = torch.rand(args.areas, t, *gen.out_shape)
    perm = torch.randperm(padded[0].numel())
    keep = (torch.linspace(0.05, 0.2, args.areas) * t * size * size).floor()
    rows = [("mask generator (smooth max)", _compare(lambda s: gen(s)[1], lambda s: plain_mask_generator(gen, s),
                                                     seeds, args.repeats)),
            ("blur pyramid", _compare(pyramid.apply, lambda m: plain_pyramid(pyramid, m), masks, args.repeats)),
            ("area loss", _compare(lambda p: area_loss(p, keep, False, perm),
                                   lambda p: sorted_area_loss(p, keep, perm), padded, args.repeats))]
    print(f"\n## EP building blocks, forward + backward: {args.areas} areas × {t} frames at {size} px, "
          f"{args.threads} threads\n")
    print("| block | ours ms | plain ms | speed-up | max abs Δ output | max Δ gradient / max gradient |\n"
          "|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['ours_ms']:.1f} | {r['plain_ms']:.1f} | {r['plain_ms'] / r['ours_ms']:.2f}× | "
              f"{r['out_diff']:.1e} | {r['grad_diff']:.1e} |")


if __name__ == "__main__":
    main()
