"""The benchmark command: rows per (model, clip, method), resumable, and the tables built from them."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from benchmarks import faithfulness as benchmark

pytestmark = pytest.mark.integration


def test_benchmark_rows_resume_and_tables(tmp_path, capsys):
    args = ["--models", "synth-r2plus1d-small", "--methods", "random", "grad_cam", "--clips", "1", "--out",
            str(tmp_path)]
    benchmark.main(args)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["clip"], r["method"]) for r in rows] == [("synth-1000000", "random"), ("synth-1000000", "grad_cam")]
    for r in rows:
        assert 0 <= r["insertion"] <= 1 and 0 <= r["deletion"] <= 1 and len(r["insertion_curve"]) == 29
        assert r["target"] == 0                                   # the ground-truth label of seed 1000000
        assert r["dataset"] == benchmark.synthetic.DATASET
        assert {"pointing", "temporal_pointing", "loc_error_val", "loc_error_mean", "loc_error_energy"} <= set(r)
        assert np.array(r["gallery"]).shape == (4, 28, 28) and len(r["gallery_boxes"]) == 4   # the first clip
    printed = capsys.readouterr().out
    assert "| random |" in printed and "| grad_cam |" in printed and "CI ↑" in printed

    benchmark.main(args)                                          # resumes: nothing left to compute
    assert "2 rows found" in (second := capsys.readouterr().out) and "0 to compute" in second
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    with (tmp_path / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (tmp_path / "tables.md").read_text().startswith("### synth-r2plus1d-small — 1 clips")
    report = (tmp_path / "report.html").read_text()
    assert "plotly" in report[:20000].lower() and "maps of synth-1000000" in report


def test_summary_averages_and_scales():
    rows = [{"model": "m", "method": "a", "insertion": 0.2, "loc_error_val": 1.0, "pointing": 0.5, "seconds": 2.0},
            {"model": "m", "method": "a", "insertion": 0.4, "loc_error_val": 0.0, "pointing": 1.0, "seconds": 3.0},
            {"model": "m", "method": "a", "insertion": 0.3, "loc_error_val": 0.5, "pointing": 0.75, "seconds": 95.0},
            {"model": "m", "method": "b", "error": "not applicable"}]
    table = benchmark.summarise(rows)
    assert table["m"]["a"]["insertion"] == pytest.approx(0.3)
    assert table["m"]["a"]["seconds"] == pytest.approx(3.0)       # the median: one paused clip does not count
    assert table["m"]["a"]["loc_error_val"] == pytest.approx(50.0)
    assert table["m"]["a"]["pointing"] == pytest.approx(75.0)
    assert "b" not in table["m"]


def test_paired_comparison_counts_wins_by_each_metrics_direction():
    """Clip by clip against a base method: 'better' follows the metric's direction, ties are left out, and p is
    the two-sided sign test (3 wins, 1 loss: 2 × 5/16 = 0.625)."""
    base = [0.5, 0.5, 0.5, 0.5, 0.5]
    other = [0.6, 0.7, 0.9, 0.4, 0.5]                             # 3 higher, 1 lower, 1 tie
    rows = [{"model": "m", "method": method, "clip": f"c{i}", "insertion": v, "deletion": v}
            for method, values in (("a", base), ("b", other)) for i, v in enumerate(values)]
    rows.append({"model": "m", "method": "b", "clip": "c9", "insertion": 1.0, "deletion": 0.0})    # no pair
    text = benchmark.paired(rows, "a", ["a", "b"])
    assert "| method | clips | CI ↑ | CD ↓ |" in text
    assert "| b | 5 | 3–1 (0.62) | 1–3 (0.62) |" in text         # deletion: lower is better
    one_sided = [{"model": "m", "method": m, "clip": f"c{i}", "insertion": float(m == "b")}
                 for m in "ab" for i in range(12)]
    assert "| b | 12 | 12–0 (<0.001) |" in benchmark.paired(one_sided, "a", [])


def test_folder_clips_use_their_ground_truth_file(tmp_path, capsys):
    """A clip with a ``.json`` beside it gets its label and the localisation metrics; one without gets neither
    (top-1 class); a file that is not a video gets rows that say so, and the run goes on."""
    import shutil

    from zoo import ASSETS

    examples, folder = ASSETS / "examples", tmp_path / "clips"
    folder.mkdir()
    for suffix in (".mp4", ".json"):
        shutil.copy(examples / f"synth_move_right_1000001{suffix}", folder / f"a_truth{suffix}")
    shutil.copy(examples / "synth_grow_1000004.mp4", folder / "b_plain.mp4")
    (folder / "c_notes.mp4").write_text("not a video")
    benchmark.main(["--models", "synth-r2plus1d-small", "--methods", "centre", "--clips", "0", "--folder",
                    str(folder), "--out", str(tmp_path / "out")])
    rows = {r["clip"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert set(rows) == {"file-a_truth.mp4", "file-b_plain.mp4", "file-c_notes.mp4"}
    truth, plain = rows["file-a_truth.mp4"], rows["file-b_plain.mp4"]
    assert truth["target"] == 1 and {"pointing", "temporal_pointing", "loc_error_val"} <= set(truth)
    assert "insertion" in plain and not {"pointing", "temporal_pointing", "loc_error_val"} & set(plain)
    assert "c_notes.mp4" in rows["file-c_notes.mp4"]["error"] or "video" in rows["file-c_notes.mp4"]["error"]


def test_join_merges_runs_into_one_table(tmp_path, capsys):
    """``--join``: rows of several runs become one results file and one table, one row per (model, clip, method),
    the rows already in --out kept; nothing is computed."""
    def row(clip: str, method: str, insertion: float) -> dict:
        return {"model": "m", "clip": clip, "method": method, "insertion": insertion, "deletion": 0.1,
                "insertion_curve": [insertion] * 3, "deletion_curve": [0.1] * 3}

    runs = {"a": [row("c0", "ep3d", 0.2), row("c1", "ep3d", 0.4)],
            "b": [row("c1", "ep3d", 0.9), row("c0", "step", 0.6)],
            "out": [row("c0", "random", 0.5)]}
    for name, rows in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    benchmark.main(["--join", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["clip"], r["method"], r["insertion"]) for r in rows] == [
        ("c0", "random", 0.5), ("c0", "ep3d", 0.2), ("c1", "ep3d", 0.4), ("c0", "step", 0.6)]
    printed = capsys.readouterr().out
    assert "| method | CI ↑ | CD ↓ |\n" in printed and "| ep3d | 0.300 | 0.100 |\n" in printed   # measured columns only
    assert "| step (1 clips) | 0.600 |" in printed and "| random (1 clips) | 0.500 |" in printed   # fewer clips
    benchmark.main(["--join", str(tmp_path / "a"), "--out", str(out), "--against", "ep3d"])   # adds nothing
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    assert "| step | 1 | 1–0 (1) | 0–0 (1) |" in (out / "tables.md").read_text()     # c0: 0.6 against 0.2
    with pytest.raises(FileNotFoundError, match="no results.jsonl"):
        benchmark.join([tmp_path / "missing"], out)


def test_join_tags_a_runs_labels_so_one_method_under_two_settings_is_compared_clip_by_clip(tmp_path, capsys):
    def row(clip: str, method: str, deletion: float) -> dict:
        return {"model": "m", "clip": clip, "method": method, "deletion": deletion,
                "insertion_curve": [0.5] * 3, "deletion_curve": [deletion] * 3}

    runs = {"blur": [row(f"c{i}", "occlusion", 0.1) for i in range(8)],
            "grey": [row(f"c{i}", m, 0.3) for i in range(8) for m in ("occlusion", "grad_cam")]}
    for name, rows in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    benchmark.main(["--join", str(tmp_path / "blur"), str(tmp_path / "grey"), "--tags", "", "fill=zero",
                    "--methods", "occlusion", "--out", str(out), "--against", "occlusion fill=zero"])
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"occlusion", "occlusion fill=zero"}, "grad_cam's rows are not taken"
    assert "| occlusion | 8 | 8–0 (0.0078) |" in capsys.readouterr().out     # lower deletion on every clip
    with pytest.raises(SystemExit):
        benchmark.main(["--join", str(tmp_path / "blur"), "--tags", "a", "b", "--out", str(out)])


def test_join_takes_the_first_n_clips_only_when_asked(tmp_path):
    row = {"model": "m", "method": "random", "insertion": 0.5, "dataset": benchmark.synthetic.DATASET}
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / "results.jsonl").write_text("".join(
        json.dumps({**row, "clip": clip}) + "\n" for clip in ("synth-1000000", "synth-1000001", "synth-1000002",
                                                              "file-own.mp4")))
    rows = benchmark.join([tmp_path / "long"], tmp_path / "first2", 2)
    assert [r["clip"] for r in rows] == ["synth-1000000", "synth-1000001", "file-own.mp4"]
    assert len(benchmark.join([tmp_path / "long"], tmp_path / "all")) == 4


def test_rows_of_another_dataset_version_are_neither_resumed_nor_joined(tmp_path):
    """Rows of synthetic clips rendered by another version of SynthActions-10 (rows without the field are v1)
    would average other pixels into the table: run and join refuse them."""
    old = {"model": "synth-r2plus1d-small", "clip": "synth-1000000", "method": "random", "insertion": 0.5}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.jsonl").write_text(json.dumps(old) + "\n")
    with pytest.raises(ValueError, match="SynthActions-10 v1"):
        benchmark.run(["synth-r2plus1d-small"], ["random"], 1, tmp_path / "old")
    with pytest.raises(ValueError, match="holds rows of SynthActions-10 v1"):
        benchmark.join([tmp_path / "old"], tmp_path / "new")
    (tmp_path / "files").mkdir()                                  # a folder's clips carry no dataset version
    (tmp_path / "files" / "results.jsonl").write_text(json.dumps({**old, "clip": "file-a.mp4"}) + "\n")
    assert len(benchmark.join([tmp_path / "files"], tmp_path / "new")) == 1


def test_a_row_cut_short_by_a_killed_run_is_dropped_and_computed_again(tmp_path):
    """A run killed while writing leaves a last line without its newline: reading skips it, and the next append
    replaces it instead of gluing the new row onto it."""
    row = {"model": "m", "clip": "synth-1000000", "method": "random", "insertion": 0.5}
    line = json.dumps(row) + "\n"
    benchmark.results_file(tmp_path).write_text(line + line[:20])
    assert benchmark.read_rows(tmp_path) == [row]
    benchmark.append_rows(tmp_path, [{**row, "clip": "synth-1000001"}])
    assert [r["clip"] for r in benchmark.read_rows(tmp_path)] == ["synth-1000000", "synth-1000001"]
    assert benchmark.results_file(tmp_path).read_text().count("\n") == 2


def test_params_reach_the_method_and_label_its_rows(tmp_path, capsys):
    args = ["--models", "synth-r2plus1d-small", "--methods", "rise", "--clips", "1", "--out", str(tmp_path)]
    benchmark.main(args + ["--params", '{"masks": 10}'])
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["method"], r["params"], r["forwards"]) for r in rows] == [("rise masks=10", {"masks": 10}, 11)]
    assert "| rise masks=10 |" in capsys.readouterr().out
    benchmark.main(args + ["--params", '{"masks": 10}'])          # resumes under the label
    assert "0 to compute" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        benchmark.main(args + ["--methods", "random", "--params", '{"masks": 10}'])
    assert "--params: random has no parameter(s) ['masks']" in capsys.readouterr().err
    for params, says in (("[1]", "a JSON object of name: value is needed"), ("{bad", "not JSON")):
        with pytest.raises(SystemExit):
            benchmark.main(args + ["--params", params])
        assert says in capsys.readouterr().err


def test_validation_clips_for_choosing_settings(tmp_path, capsys):
    """``--split val`` explains the validation clips (seeds from 900,000), never the test clips it reports on."""
    benchmark.main(["--models", "synth-cnn-lstm", "--methods", "occlusion", "--clips", "1", "--split", "val",
                    "--params", '{"fill": "time_median", "window": [16, 56, 56], "strides": [16, 56, 56]}',
                    "--out", str(tmp_path)])
    (row,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert row["clip"] == "synth-900000" and row["params"]["fill"] == "time_median" and row["forwards"] == 5
    assert "loc_iou_val" in row and 0 <= row["loc_iou_val"] <= 1


def test_sanity_and_extra_metrics_add_their_values_to_every_row(tmp_path, capsys):
    benchmark.main(["--models", "synth-cnn-lstm", "--methods", "centre", "gradient", "--clips", "1", "--sanity",
                    "--extra-metrics", "--out", str(tmp_path)])
    rows = {r["method"]: r for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    assert rows["centre"]["sanity_model"] == pytest.approx(1.0) == rows["centre"]["sanity_reversed"]
    assert rows["gradient"]["sanity_model"] < 0.5 and rows["gradient"]["sanity_reversed"] < 0.9
    assert all(0 <= r["road_morf"] <= 1 and 0 <= r["road_lerf"] <= 1 and r["infidelity"] >= 0 for r in rows.values())
    assert "ρ random model ↓" in (printed := capsys.readouterr().out) and "ROAD MoRF ↓" in printed


def test_the_serial_benchmark_runs_without_ray_and_the_ray_engine_says_what_it_needs(tmp_path):
    """Ray is optional: with it unimportable the serial benchmark runs, and ``--engine ray`` says how to get it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['ray'] = None; from benchmarks import faithfulness; "
            "sys.exit(faithfulness.main(sys.argv[1:]))")
    args = ["--models", "synth-r2plus1d-small", "--methods", "random", "--clips", "1", "--out", str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "| random |" in done.stdout, done.stderr
    refused = subprocess.run([sys.executable, "-c", code, *args, "--engine", "ray"], capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and "pip install -r requirements-ray.txt" in refused.stderr


def test_a_row_with_max_sensitivity(tmp_path):
    """``--sensitivity`` adds each map's max-sensitivity: 0 for ``random`` (its map ignores the clip), above 0 for
    Grad-CAM; the table gets the column."""
    benchmark.main(["--models", "synth-r2plus1d-small", "--methods", "random", "grad_cam", "--clips", "1",
                    "--sensitivity", "--out", str(tmp_path)])
    rows = {r["method"]: r for r in benchmark.read_rows(tmp_path)}
    assert rows["random"]["max_sensitivity"] == 0.0 and rows["grad_cam"]["max_sensitivity"] > 0
    assert "max-sens. ↓" in (tmp_path / "tables.md").read_text()
