"""fp32 against bf16 autocast, and how the convolutions run, on this machine (``python -m benchmarks.precision``).

Times a forward pass (under ``inference_mode``) and a training step (AdamW, as ``zoo.training.train`` takes it) of the
embedded architectures in both arithmetics, side by side in one process, at random weights: speed does not depend
on them. On CPUs without bf16 units autocast emulates bf16, which is why ``explainers.device.bf16_is_native``
decides per machine. A second table times the two convolution paths the embedded models take on CPU against
what they replaced: the CNN-LSTM's per-frame CNN on NHWC frames (as ``FrameEncoder`` feeds it) against NCHW, and
the R(2+1)D model with its temporal convolutions run as 2-D ones (``temporal_convs_as_2d``) on NDHWC clips
against ``Conv3d`` on NCDHW clips. A third table times both models with glibc's default ``malloc`` settings and with
``explainers.device.keep_freed_memory``, each in a fresh process (a running one cannot go back to the defaults), and
counts the system time and page faults of the same work. A fourth times the pass the gradient and extremal-perturbation
explainers repeat, a forward + backward to the input in eval mode, with PyTorch's batch norm and with
``batchnorms_as_affine``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch

from benchmarks.timing import best_of
from explainers.device import bf16_is_native, configure_cpu, keep_freed_memory
from zoo.architectures import batchnorms_as_affine, build, temporal_convs_as_2d
from zoo.training.train import EMBEDDED_CARDS


def measure(arch: str, bf16: bool, batch: int, train_batch: int, repeats: int) -> tuple[float, float]:
    """Seconds per clip of a forward pass and seconds per training step, in bf16 autocast or fp32."""
    fmt = torch.channels_last_3d if arch == "r2plus1d_small" else torch.contiguous_format
    x = torch.randn(train_batch, 3, 16, 112, 112).contiguous(memory_format=fmt)
    forward, step = _time_model(build(arch, 10).to(memory_format=fmt), x, x[:batch], bf16, repeats)
    return forward / batch, step


def measure_convolutions(arch: str, ours: bool, batch: int, train_batch: int, repeats: int) -> tuple[float, float]:
    """Seconds per clip of a forward pass and seconds per training step in fp32, with the convolution path the
    model takes now (``ours``) or the one it replaced. CNN-LSTM: its per-frame CNN alone, on the 16 frames of
    each clip (8 channels) in NHWC or NCHW. R(2+1)D: the whole model, with ``temporal_convs_as_2d`` and NDHWC
    clips, or with neither."""
    if arch == "cnn_lstm":
        x = torch.randn(train_batch * 16, 8, 112, 112)
        x = x.contiguous(memory_format=torch.channels_last) if ours else x
        forward, step = _time_model(build(arch, 10).frames.cnn, x, x[:batch * 16], False, repeats)
    else:
        model = temporal_convs_as_2d(build(arch, 10)) if ours else build(arch, 10)
        model.channels_last = ours
        x = torch.randn(train_batch, 3, 16, 112, 112)
        forward, step = _time_model(model, x, x[:batch], False, repeats)
    return forward / batch, step


def measure_allocator(arch: str, keep: bool, batch: int, train_batch: int, repeats: int) -> dict[str, float]:
    """``measure`` in fp32, with or without ``keep_freed_memory``, and the system time and minor page faults it
    took (model building and warm-up included). Meant for a fresh process: glibc's adaptive defaults cannot be
    restored once changed."""
    if keep and not keep_freed_memory():
        raise RuntimeError("the C library is not glibc: nothing to compare")
    before = resource.getrusage(resource.RUSAGE_SELF)
    forward, step = measure(arch, False, batch, train_batch, repeats)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"forward": forward, "step": step, "system": after.ru_stime - before.ru_stime,
            "faults": after.ru_minflt - before.ru_minflt}


def measure_batchnorm(arch: str, affine: bool, batch: int, repeats: int) -> float:
    """Seconds per clip of a forward + backward to the input in eval mode with frozen weights, as the explainers
    run it, with PyTorch's batch norm or with ``batchnorms_as_affine``."""
    model = temporal_convs_as_2d(build(arch, 10)).eval().requires_grad_(False)
    model = batchnorms_as_affine(model) if affine else model
    x = torch.randn(batch, 3, 16, 112, 112)

    def forward_backward() -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xi)[:, 0].sum(), xi)

    return best_of(forward_backward, repeats, warmup=1)[0] / batch


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

    return best_of(forward, repeats, warmup=1)[0], best_of(step, repeats, warmup=1)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4, help="clips per forward pass")
    parser.add_argument("--train-batch", type=int, default=16, help="clips per training step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tables", nargs="+", choices=("precision", "convolutions", "allocator", "batchnorm"),
                        default=("precision", "convolutions", "allocator", "batchnorm"))
    parser.add_argument("--allocator-run", nargs=2, metavar=("ARCH", "KEEP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.allocator_run:                        # one side of the allocator table, in its own process
        torch.set_num_threads(args.threads)
        arch, keep = args.allocator_run
        print(json.dumps(measure_allocator(arch, keep == "1", args.batch, args.train_batch, args.repeats)))
        return
    configure_cpu(args.threads)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16_is_native('cpu') = {bf16_is_native('cpu')}, "
          f"{args.threads} thread(s)")
    if "precision" in args.tables:
        precision_table(args)
    if "convolutions" in args.tables:
        convolutions_table(args)
    if "allocator" in args.tables:
        allocator_table(args)
    if "batchnorm" in args.tables:
        batchnorm_table(args)


def precision_table(args: argparse.Namespace) -> None:
    print("\n| model | forward fp32 | forward bf16 | training step fp32 | training step bf16 |\n|---|---|---|---|---|")
    for arch, card in EMBEDDED_CARDS.items():
        (f32, s32), (f16, s16) = (measure(arch, bf16, args.batch, args.train_batch, args.repeats)
                                  for bf16 in (False, True))
        print(f"| {card} | {f32 * 1e3:,.0f} ms/clip | {f16 * 1e3:,.0f} ms/clip ({f16 / f32:.1f}×) | "
              f"{s32:.1f} s | {s16:.1f} s ({s16 / s32:.1f}×) |", flush=True)


def convolutions_table(args: argparse.Namespace) -> None:
    print("\n| model | change | forward before | forward after | training step before | training step after |"
          "\n|---|---|---|---|---|---|")
    changes = {"cnn_lstm": "frame CNN (alone) on NHWC frames",
               "r2plus1d_small": "temporal convolutions as 2-D, NDHWC clips"}
    for arch, change in changes.items():
        (fb, sb), (fa, sa) = (measure_convolutions(arch, ours, args.batch, args.train_batch, args.repeats)
                              for ours in (False, True))
        print(f"| {EMBEDDED_CARDS[arch]} | {change} | {fb * 1e3:,.1f} ms/clip | {fa * 1e3:,.1f} ms/clip "
              f"({fb / fa:.2f}× faster) | {sb:.2f} s | {sa:.2f} s ({sb / sa:.2f}× faster) |", flush=True)


def allocator_table(args: argparse.Namespace) -> None:
    print("\n| model | malloc | forward | training step | system time | minor page faults |\n|---|---|---|---|---|---|")
    for arch, card in EMBEDDED_CARDS.items():
        runs = []
        for keep in ("0", "1"):
            command = [sys.executable, "-m", "benchmarks.precision", "--allocator-run", arch, keep,
                       "--threads", str(args.threads), "--batch", str(args.batch),
                       "--train-batch", str(args.train_batch), "--repeats", str(args.repeats)]
            runs.append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
        for name, r in zip(("glibc defaults", "freed memory kept"), runs):
            print(f"| {card} | {name} | {r['forward'] * 1e3:,.1f} ms/clip ({runs[0]['forward'] / r['forward']:.2f}×) "
                  f"| {r['step']:.2f} s ({runs[0]['step'] / r['step']:.2f}×) | {r['system']:.2f} s | {r['faults']:,} |",
                  flush=True)


def batchnorm_table(args: argparse.Namespace) -> None:
    print("\n| model | clips per pass | forward + backward, PyTorch's batch norm | the same, affine batch norm |"
          "\n|---|---|---|---|")
    for arch, card in EMBEDDED_CARDS.items():
        for batch in sorted({1, 3, args.batch}):
            native, affine = (measure_batchnorm(arch, affine, batch, args.repeats) for affine in (False, True))
            print(f"| {card} | {batch} | {native * 1e3:,.1f} ms/clip | {affine * 1e3:,.1f} ms/clip "
                  f"({native / affine:.2f}× faster) |", flush=True)


if __name__ == "__main__":
    main()
