"""The timing helpers of the benchmarks: the best of a few runs, with the device synchronised around each, and the
pass the gradient and extremal-perturbation methods repeat."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def synchronise() -> None:
    """Wait for queued GPU work (a no-op without CUDA), so that a timer measures the work, not its launch."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_of(fn: Callable[[], Any], repeats: int = 3, warmup: int = 0) -> tuple[float, Any]:
    """(fastest wall time in seconds of ``repeats`` calls of ``fn``, the last call's result), after ``warmup``
    untimed calls (the first call of a new shape builds oneDNN kernels)."""
    for _ in range(warmup):
        fn()
    times, result = [], None
    for _ in range(repeats):
        synchronise()
        start = time.perf_counter()
        result = fn()
        synchronise()
        times.append(time.perf_counter() - start)
    return min(times), result


def forward_backward(model: nn.Module, x: torch.Tensor) -> None:
    """One forward of the clip ``x`` and one backward of its top score to the input (the model's parameters may be
    frozen: the input is the leaf that needs a gradient)."""
    xi = x.clone().requires_grad_(True)
    torch.autograd.grad(model(xi)[0].max(), xi)
