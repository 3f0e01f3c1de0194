"""explainers.device: glibc keeps freed memory, so repeated large buffers stop faulting in fresh pages."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explainers.device import configure_cpu

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
REPEATED_BUFFERS = """
import ctypes, resource, sys
from explainers.device import keep_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
if sys.argv[1] == "1":
    assert keep_freed_memory()
def buffer(size=64 << 20):                             # above glibc's largest mmap threshold (32 MB)
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
buffer()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    buffer()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings are glibc's")
def test_kept_memory_is_reused_without_page_faults():
    faults = [int(subprocess.run([sys.executable, "-c", REPEATED_BUFFERS, keep], capture_output=True, text=True,
                                 check=True, cwd=Path(__file__).resolve().parents[1]).stdout) for keep in ("0", "1")]
    pages = 5 * (64 << 20) // 4096
    assert faults[1] < 0.05 * pages                    # kept: the same heap memory is reused
    if not (THP.exists() and "[always]" in THP.read_text()):   # 2 MB pages would fault 512× less often
        assert faults[0] > 0.8 * pages                 # glibc's defaults: every buffer is a fresh mapping


def test_configure_cpu_sets_threads():
    before = torch.get_num_threads()
    try:
        configure_cpu(2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


DENORMALS = """
import sys, threading, torch
from explainers.device import configure_cpu
configure_cpu(1, flush_denormal=sys.argv[1] == "1")
tiny = torch.full((4,), 1e-39)                                 # below float32's smallest normal, 1.2e-38
seen = []
def halve():
    seen.append(float((tiny * 0.5).sum()))
halve()
worker = threading.Thread(target=halve)                        # started afterwards: it inherits the setting
worker.start()
worker.join()
print(*seen)
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="denormal flushing is checked on x86")
def test_configure_cpu_flushes_denormals_in_its_thread_and_the_threads_started_after_it():
    def run(flush: str) -> list[float]:
        return [float(v) for v in subprocess.run([sys.executable, "-c", DENORMALS, flush], capture_output=True,
                                                 text=True, check=True, cwd=Path(__file__).resolve().parents[1]
                                                 ).stdout.split()]
    kept, flushed = run("0"), run("1")
    assert all(v == pytest.approx(2e-39, rel=1e-3) for v in kept)
    assert flushed == [0.0, 0.0]


KEPT_THEN_RELEASED = """
import ctypes, sys
from explainers.device import keep_freed_memory, release_freed_memory
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
assert keep_freed_memory(arenas=2)
start = rss_mb()
blocks = [libc.malloc(8 << 20) for _ in range(40)]           # 320 MB in blocks a tensor batch might take
for p in blocks:
    ctypes.memset(p, 1, 8 << 20)
for p in blocks:
    libc.free(p)
kept = rss_mb()
assert release_freed_memory()
print(kept - start, rss_mb() - start)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_memory_is_kept_until_released():
    kept, after = map(float, subprocess.run([sys.executable, "-c", KEPT_THEN_RELEASED], capture_output=True,
                                            text=True, check=True, cwd=Path(__file__).resolve().parents[1]
                                            ).stdout.split())
    assert kept > 250 and after < 50
