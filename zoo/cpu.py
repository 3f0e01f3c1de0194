"""Process-wide CPU settings that every entry point applies first: the app, the command lines, the benchmarks
and the tests (``configure_cpu``)."""
from __future__ import annotations

import ctypes

import torch

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4          # mallopt parameters, from glibc's <malloc.h>
TRIM_THRESHOLD = 1 << 30                       # free heap kept before any of it goes back to the kernel


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse instead of handing it back to the kernel.

    PyTorch's CPU tensors come from ``malloc``. With glibc's defaults a buffer above the mmap threshold (at most
    32 MB) is a fresh mapping each time, and a large free trims the heap, so every batch of a perturbation method
    and every training step faults in new pages. Serving blocks from the heap instead (no mmap) and trimming it
    only above 1 GB of free memory cut the page faults of the embedded models by 3–4× on the 2-core VM this project
    is developed on, and made a batch-4 forward pass 1.2–2.4× faster and a training step 1.07–1.7× faster
    (``python -m zoo.bench_precision --tables allocator``). The cost: up to 1 GB of freed memory stays in the
    process. Blocks of more than 64 MB requested from threads other than the main one still get mappings of their
    own (glibc's per-thread heaps are that size). Changes nothing and returns False where the C library is not
    glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version                                  # glibc only; musl and macOS lack it
    except (OSError, AttributeError):
        return False
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return all(libc.mallopt(param, value) == 1 for param, value in settings)


def configure_cpu(threads: int | None = None) -> None:
    """Set torch's CPU threads (when given) and ``keep_freed_memory``."""
    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()
