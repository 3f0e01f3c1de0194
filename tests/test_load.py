"""The load benchmark itself: a short run against the app in its own process answers every request, stops the
work of a dropped visitor, and reports what the docs record."""
from __future__ import annotations

import pytest

from benchmarks import load

pytestmark = pytest.mark.slow


def test_a_short_load_run_answers_everything_and_reports_cpu_memory_and_disk(capsys):
    report = load.main(["--visitors", "2", "--seconds", "15", "--think", "0.5", "1", "--drops", "1",
                        "--retention", "0"])
    requests = report["requests"]
    assert all(r["failed"] == 0 for r in requests.values()), report["messages"]
    assert requests["classify"]["answered"] >= 1 and requests["one-pass explain"]["answered"] >= 1
    assert requests["dropped connection"]["dropped"] == 1
    shown = requests["classify"]["answered"] + requests["one-pass explain"]["answered"]
    assert report["fetched"] >= shown, "each page fetched its strip or overlay"
    assert report["idle_cores"] < 0.5                        # idle after warm-up: Gradio's polling only
    assert report["idle_after_s"] is not None                # and back to that once the visitors left
    assert report["rss_end_mb"] > 0 and report["disk_end_mb"] >= report["disk_start_mb"]
    assert "| one-pass explain |" in capsys.readouterr().out
