"""fp32 against bf16 autocast, and NCHW against NHWC frames, on this machine (``python -m zoo.bench_precision``).

Times a forward pass (under ``inference_mode``) and a training step (AdamW, as ``zoo.train`` takes it) of the
embedded architectures in both arithmetics, side by side in one process, at random weights: speed does not depend
on them. On CPUs without bf16 units autocast emulates bf16, which is why ``explainers._core.bf16_is_native``
decides per machine. A second table times the CNN-LSTM's per-frame CNN on the same frames in NCHW and in NHWC
(channels-last, the layout ``FrameEncoder`` feeds it).
"""
from __future__ import annotations

import argparse

import torch

from explainers._core import bf16_is_native
from explainers.bench_speed import _best_of
from zoo.architectures import build
from zoo.train import EMBEDDED_CARDS


def _warm_best(fn, repeats: int) -> float:
    fn()                                                           # warm-up: oneDNN builds its kernels
    return _best_of(fn, repeats)


def measure(arch: str, bf16: bool, batch: int, train_batch: int, repeats: int) -> tuple[float, float]:
    """Seconds per clip of a forward pass and seconds per training step, in bf16 autocast or fp32."""
    fmt = torch.channels_last_3d if arch == "r2plus1d_small" else torch.contiguous_format
    x = torch.randn(train_batch, 3, 16, 112, 112).contiguous(memory_format=fmt)
    forward, step = _time_model(build(arch, 10).to(memory_format=fmt), x, x[:batch], bf16, repeats)
    return forward / batch, step


def measure_layout(channels_last: bool, batch: int, train_batch: int, repeats: int) -> tuple[float, float]:
    """Seconds per clip of a forward pass and seconds per training step of the CNN-LSTM's per-frame CNN on the
    16 frames of each clip (8 input channels), laid out NHWC (``channels_last``) or NCHW."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(train_batch * 16, 8, 112, 112).contiguous(memory_format=fmt)
    forward, step = _time_model(build("cnn_lstm", 10).frames.cnn, x, x[:batch * 16], False, repeats)
    return forward / batch, step


def _time_model(model: torch.nn.Module, x: torch.Tensor, x_forward: torch.Tensor, bf16: bool,
                repeats: int) -> tuple[float, float]:
    """Seconds of a forward pass on ``x_forward`` and of a training step on ``x``. The step's loss is the mean
    squared output (as cheap as a cross-entropy, and defined for a feature extractor too)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.eval()(x_forward)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.train()(x).float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _warm_best(forward, repeats), _warm_best(step, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4, help="clips per forward pass")
    parser.add_argument("--train-batch", type=int, default=16, help="clips per training step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tables", nargs="+", choices=("precision", "layout"), default=("precision", "layout"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16_is_native('cpu') = {bf16_is_native('cpu')}, "
          f"{args.threads} thread(s)")
    if "precision" in args.tables:
        precision_table(args)
    if "layout" in args.tables:
        layout_table(args)


def precision_table(args: argparse.Namespace) -> None:
    print("\n| model | forward fp32 | forward bf16 | training step fp32 | training step bf16 |\n|---|---|---|---|---|")
    for arch, card in EMBEDDED_CARDS.items():
        (f32, s32), (f16, s16) = (measure(arch, bf16, args.batch, args.train_batch, args.repeats)
                                  for bf16 in (False, True))
        print(f"| {card} | {f32 * 1e3:,.0f} ms/clip | {f16 * 1e3:,.0f} ms/clip ({f16 / f32:.1f}×) | "
              f"{s32:.1f} s | {s16:.1f} s ({s16 / s32:.1f}×) |", flush=True)


def layout_table(args: argparse.Namespace) -> None:
    print("\n| synth-cnn-lstm's frame CNN | forward NCHW | forward NHWC | training step NCHW | training step NHWC |"
          "\n|---|---|---|---|---|")
    (fc, sc), (fl, sl) = (measure_layout(last, args.batch, args.train_batch, args.repeats) for last in (False, True))
    print(f"| fp32 | {fc * 1e3:,.1f} ms/clip | {fl * 1e3:,.1f} ms/clip ({fc / fl:.2f}× faster) | "
          f"{sc:.2f} s | {sl:.2f} s ({sc / sl:.2f}× faster) |", flush=True)


if __name__ == "__main__":
    main()
