"""Where and at what precision the model runs: one home for the device helpers that the explainers, the zoo's
training, the benchmarks and the app share (``explainers`` is the bottom layer, so every other layer may import it).

* ``forward`` — one forward pass in fp32, or under bf16 autocast (the ``precision`` switch of the forward-only
  methods, the EP family and the metrics).
* ``bf16_is_native`` — whether the device has bf16 arithmetic; ``default_batch`` — the batch cap when none is given.
* ``configure_cpu`` — torch's CPU threads, ``keep_freed_memory`` and flushing denormals, applied first by every
  entry point;
  ``release_freed_memory`` hands that memory back (a long-running server does, once it is idle).
"""
from __future__ import annotations

import ctypes
import warnings

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8   # mallopt parameters, from glibc's <malloc.h>
TRIM_THRESHOLD = 1 << 30                       # free heap kept before any of it goes back to the kernel


def forward(model: nn.Module, xs: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """``model(xs)`` as fp32 logits. ``precision="bf16"`` runs it under bf16 autocast with the clips in
    ``channels_last_3d`` layout (faster on devices with bf16 units, probabilities within a few 1e-3; docs/performance.md
    §bf16). Autograd goes through it: the EP family optimises its masks through bf16 passes when asked."""
    if precision == "fp32":
        return model(xs).float()
    if precision != "bf16":
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if not bf16_is_native(xs.device):
        warnings.warn("this CPU has no bf16 arithmetic (AVX512-BF16 or AMX): bf16 is emulated and much slower "
                      "than fp32 (docs/performance.md, bf16); use precision='fp32'", RuntimeWarning, stacklevel=2)
    with torch.autocast(xs.device.type, dtype=torch.bfloat16):
        return model(xs.contiguous(memory_format=torch.channels_last_3d)).float()


def bf16_is_native(device: torch.device | str) -> bool:
    """True on CUDA and on CPUs with AVX512-BF16 or AMX. Elsewhere autocast emulates bf16 at a large cost
    (docs/performance.md, bf16)."""
    if torch.device(device).type == "cuda":
        return True
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def default_batch(device: torch.device | str) -> int:
    """Clips per batched pass when the caller does not say: 32 on a GPU; 4 on a CPU, where larger batches cost
    more per clip and memory grows with no gain (docs/performance.md, batch size)."""
    return 32 if torch.device(device).type == "cuda" else 4


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (``mallopt``, ``malloc_trim``), else None (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory(arenas: int | None = None) -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse instead of handing it back to the kernel.

    PyTorch's CPU tensors come from ``malloc``. With glibc's defaults a buffer above the mmap threshold (at most
    32 MB) is a fresh mapping each time, and a large free trims the heap, so every batch of a perturbation method
    and every training step faults in new pages. This serves blocks from the heap instead (no mmap) and trims it
    only above 1 GB of free memory (docs/performance.md, malloc). The cost: up to 1 GB of freed memory stays in
    each of glibc's heaps, and glibc opens up to 8 heaps per core for a process with many threads; ``arenas``
    caps their number (a server that runs each request in a new thread passes the number of cores). Blocks of
    more than 64 MB requested from threads other than the main one still get mappings of their own. Changes
    nothing and returns False where the C library is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    settings = [(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)] + ([(M_ARENA_MAX, arenas)] if arenas else [])
    return all(libc.mallopt(param, value) == 1 for param, value in settings)


def release_freed_memory() -> bool:
    """Hand the free memory of every glibc heap back to the kernel (``malloc_trim(0)``): what
    ``keep_freed_memory`` kept, once a server has no work running. Returns False where the C library is not
    glibc."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def configure_cpu(threads: int | None = None, arenas: int | None = None, flush_denormal: bool = True) -> None:
    """Set torch's CPU threads (when given) and ``keep_freed_memory`` (with at most ``arenas`` heaps, when given),
    and flush denormal floats to zero (unless ``flush_denormal`` is False).

    Passes through a trained transformer fill with numbers below 1.2e-38 (softmax rows near 0 and 1), on which a
    CPU computes many times slower: the embedded transformer's Chefer relevance took 1.1–1.6× as long with them
    (docs/performance.md, denormals), and no map measured changed. The setting belongs to a thread: threads
    started afterwards (torch's pools, a server's workers) inherit it, so entry points call this first."""
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)
    keep_freed_memory(arenas)
