"""The speed benchmarks run end to end on a small selection (their timings are not checked here)."""
from __future__ import annotations

import re

from explainers import bench_speed


def test_bench_speed_prints_rows_with_pass_counts_and_honours_param_overrides(capsys):
    bench_speed.main(["--models", "synth-r2plus1d-small", "--threads", "1", "--batch", "2", "--skip-references",
                      "--skip-precision", "--methods", "gradient", "ep3d", "--params", '{"iterations": 2}'])
    out = capsys.readouterr().out
    assert re.search(r"\| gradient \| default \| [\d.]+ \| 1 \| 1 \| [\d.]+ \| [\d.]+ \|", out)
    # 2 iterations × 3 areas (forward + backward), the 3 final clips and the clean clip
    assert re.search(r"\| ep3d \| fast, iterations=2 \| [\d.]+ \| 10 \| 6 \|", out)
