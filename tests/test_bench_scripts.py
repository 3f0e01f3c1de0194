"""The speed and metric benchmarks run end to end on a small selection (their numbers are not checked here)."""
from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest
import torch

import app
import jobs
from benchmarks import (
    attention,
    decoding,
    denormals,
    estimates,
    extremal_blocks,
    first_minute,
    metric_speed,
    precision,
    separation,
    speed,
    upsampling,
)
from tests.hubfiles import tiny_classifier

pytestmark = pytest.mark.slow


def test_bench_attention_times_every_attention_method_beside_a_pass_and_grad_cam():
    seconds = attention.costs(tiny_classifier("timesformer")[0], repeats=1)
    assert set(seconds) == {"forward", "forward + backward", *attention.METHODS}
    assert all(s > 0 for s in seconds.values())


def test_bench_denormals_times_each_model_with_denormals_kept_and_flushed_in_fresh_processes(capsys):
    denormals.main(["--clips", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    for card in ("synth-r2plus1d-small", "synth-cnn-lstm", "synth-videomae-small"):
        for clips in ("held-out", "real", "noise"):
            assert re.search(rf"\| {card} \| {clips} \| forward \+ backward \|( [\d.]+ ms \|){{2}} [\d.]+× \| – \|",
                             out)
            assert re.search(rf"\| {card} \| {clips} \| integrated_gradients \|( [\d.]+ ms \|){{2}} [\d.]+× \| "
                             rf"\d\.\de[+-]\d+ \|", out)
    assert "| synth-videomae-small | real | chefer |" in out and "| synth-cnn-lstm | real | chefer |" not in out


def test_bench_upsampling_compares_the_separable_form_with_torchs_trilinear_on_every_case(capsys):
    upsampling.main(["--repeats", "1"])
    out = capsys.readouterr().out
    for name, *_ in upsampling.CASES:
        found = re.search(rf"\| {name} \| [\d×]+ \| [\d×]+ \|( [\d.]+ ms \|){{2}} [\d.]+× \| (\S+) \|", out)
        assert found and float(found[2]) < 1e-5


def test_bench_decoding_compares_read_clip_with_decord_on_the_same_frames(capsys):
    pytest.importorskip("decord", reason="decord is a benchmark dependency (requirements-bench.txt)")
    decoding.main(["--clips", "example", "bunny", "--repeats", "1"])
    rows = re.findall(r"\| [^|]+ \| [\d.]+ \| [\d.]+ \| [\d.]+× \| ([\d.]+) \|", capsys.readouterr().out)
    assert len(rows) == 2 and all(float(delta) < 1 for delta in rows)        # the same frames, decoded alike


def test_bench_speed_prints_rows_with_pass_counts_and_honours_param_overrides(capsys):
    speed.main(["--models", "synth-r2plus1d-small", "--threads", "1", "--batch", "2", "--skip-references",
                      "--methods", "gradient", "ep3d", "--params", '{"iterations": 2}'])
    out = capsys.readouterr().out
    assert re.search(r"\| gradient \| default \| [\d.]+ \| 1 \| 1 \| [\d.]+ \| [\d.]+ \|", out)
    # 2 iterations × 3 areas (forward + backward), the 3 final clips and the clean clip
    assert re.search(r"\| ep3d \| fast, iterations=2 \| [\d.]+ \| 10 \| 6 \|", out)
    # the EP family takes precision="bf16"; gradient does not and is not compared
    assert re.search(r"\| ep3d \| [\d.]+ \| [\d.]+ \| [\d.]+× \| [\d.]+ \| [\d.-]+ \|", out)
    assert not re.search(r"\| gradient \| [\d.]+ \| [\d.]+ \| [\d.]+×", out)


@pytest.mark.parametrize("params, says", [("[1]", "a JSON object of name: value is needed"),
                                          ("{bad", "not JSON"), ('{"nope": 1}', "none of the methods takes 'nope'"),
                                          ('{"steps": "x"}', "steps must be a whole number")])
def test_bench_speed_refuses_params_that_no_method_can_take(params, says, capsys):
    with pytest.raises(SystemExit):
        speed.main(["--models", "synth-cnn-lstm", "--methods", "gradient", "integrated_gradients",
                    "--params", params])
    assert says in capsys.readouterr().err


def test_bench_metrics_compares_the_metric_pass_with_a_naive_loop_and_with_its_forwards(capsys):
    metric_speed.main(["--models", "synth-cnn-lstm", "--threads", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert re.search(r"synth-cnn-lstm: naive loop [\d.]+ s, batched [\d.]+ s", out)
    assert re.search(r"max \|Δp\| between the curves \d\.\de-\d\d", out)   # same curves as the naive loop
    assert re.search(r"against its 60 forwards alone [\d.]+ s: [\d.]+×", out)
    assert re.search(r"sanity checks \d+ ms against their two maps \d+ ms: [\d.]+× \(the first on a model \d+ ms: "
                     r"[\d.]+×\)", out)
    assert re.search(r"ROAD [\d.]+ s, [\d.]+× insertion/deletion", out)
    assert re.search(r"batch norms folded [\d.]+ s, [\d.]+× unfolded, max \|Δp\| \d\.\de-0[5-9]", out)


def test_bench_precision_times_both_convolution_paths_of_both_models(capsys):
    precision.main(["--tables", "convolutions", "--batch", "1", "--train-batch", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "forward bf16" not in out
    for card in ("synth-cnn-lstm", "synth-r2plus1d-small"):
        assert re.search(rf"\| {card} \| [^|]+ \| [\d.]+ ms/clip \| [\d.]+ ms/clip \([\d.]+× faster\) \| "
                         rf"[\d.]+ s \| [\d.]+ s \([\d.]+× faster\) \|", out)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="compares glibc's malloc settings")
def test_bench_precision_runs_both_allocator_settings_in_fresh_processes(capsys):
    precision.main(["--tables", "allocator", "--batch", "1", "--train-batch", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    for card in ("synth-cnn-lstm", "synth-r2plus1d-small"):
        for setting in ("glibc defaults", "freed memory kept"):
            assert re.search(rf"\| {card} \| {setting} \| [\d.]+ ms/clip \([\d.]+×\) \| [\d.]+ s \([\d.]+×\) \| "
                             rf"[\d.]+ s \| [\d,]+ \|", out)


def test_bench_extremal_times_each_building_block_against_its_plain_definition(capsys):
    extremal_blocks.main(["--threads", "1", "--frames", "2", "--repeats", "1"])
    out = capsys.readouterr().out
    for block in ("mask generator (smooth max)", "blur pyramid", "area loss"):
        row = re.search(rf"\| {re.escape(block)} \| [\d.]+ \| [\d.]+ \| [\d.]+× \| ([\d.e+-]+) \| ([\d.e+-]+) \|", out)
        assert row and float(row[1]) < 1e-4 and float(row[2]) < 1e-3     # same outputs and gradients


@pytest.mark.skipif(not Path(first_minute.CHROMIUM).exists(), reason="no Chromium (see tests/test_browser.py)")
def test_bench_first_minute_times_a_click_to_the_overlay_and_to_the_curves_in_the_browser(capsys):
    report = first_minute.main(["--threads", "1", "--repeats", "1", "--methods", "gradient"])
    out = capsys.readouterr().out
    assert re.search(r"\| gradient \| [\d.]+ s \| [\d.]+ s \| [\d.]+ s \| [\d.]+ s \|", out)
    times = report["gradient"]
    assert times["handler overlay"] < times["handler whole"] and times["browser overlay"] < times["browser curves"]
    assert "answered from memory" in out and report["cached example, overlay"] > 0
    assert "click to its progress" in out and report["click to progress"] > 0
    clip = app.load_clip(sorted(app.EXAMPLES_DIR.glob("*.mp4"))[0], app.DEFAULT_MODEL)
    ran = app.ANSWERS.get(app.request_key(clip, [jobs.Job("gradient", None, {})], None, 0), clip)
    baseline = app.ANSWERS.get(app.request_key(clip, [app.RANDOM], None, 0), clip)
    assert ran and ran[0].is_scored and baseline, "the clicks ran the model; the random baseline stayed kept"
    assert jobs.wait_idle(0), "a request was left in a lane"


def test_bench_estimates_compares_each_methods_estimate_with_its_run(capsys):
    estimates.main(["--threads", "1", "--methods", "grad_cam", "occlusion", "chefer"])
    out = capsys.readouterr().out
    for method in ("grad_cam", "occlusion"):
        assert re.search(rf"\| {method} \| [\d.]+ s \| [\d.]+ s \| [\d.]+ s \| [\d.]+ s \| [\d.]+ \| [\d,]+ MB \|", out)
    assert "| chefer |" not in out                     # the default model is a CNN: the app does not offer it
    assert "| `ep_unsync` |" in out                                        # the ZeroGPU windows of every method
    assert jobs.ON_ZERO_GPU is False, "the benchmark left the process estimating as on ZeroGPU"


def test_bench_separation_writes_a_row_per_metric_with_margins_and_a_verdict(tmp_path):
    out, threads = tmp_path / "separation.md", torch.get_num_threads()
    args = ["--models", "synth-r2plus1d-small", "--clips", "2", "--threads", "2"]
    try:                                # both cores for its 2,000 forwards, then back to the suite's one thread
        text = separation.main([*args, "--out", str(out)])
        blur = separation.main([*args, "--no-extra", "--deletion-end", "blur"])
    finally:
        torch.set_num_threads(threads)
    assert out.read_text() == text and text.startswith("### synth-r2plus1d-small — 2 clips\n")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "±" in line]
    assert len(rows) == sum("method" not in spec.needs for spec in separation.M.METRICS.values())   # of a map
    assert all(re.search(r"\| (yes|\*\*no\*\*) \|$", row) for row in rows)
    assert blur.startswith("### synth-r2plus1d-small — 2 clips, deletion into the blurred clip")
    assert "| Deletion AUC (CD) ↓ |" in blur and "ROAD" not in blur and "Infidelity" not in blur
    deletion = [next(row for row in table.splitlines() if row.startswith("| Deletion")) for table in (text, blur)]
    assert deletion[0] != deletion[1]
