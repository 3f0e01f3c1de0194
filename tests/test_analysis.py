"""One clip's analysis: ground truth mapped onto the model's frames, metrics, files, and a JSON that reproduces it."""
from __future__ import annotations

import json
import shlex
import shutil

import numpy as np
import pytest

import analysis
import render
import videoxai
from zoo.cards import InputSpec
from zoo.synthetic import ground_truth_for
from zoo.video import map_boxes

pytestmark = pytest.mark.integration

EXAMPLE = analysis.EXAMPLES_DIR / "synth_grow_1000004.mp4"


def test_map_boxes_follows_resize_and_centre_crop():
    boxes = np.array([[10.0, 20.0, 50.0, 50.0]])
    assert np.allclose(map_boxes(boxes, (112, 112), InputSpec(size=(112, 112))), boxes)
    assert np.allclose(map_boxes(boxes, (56, 56), InputSpec(size=(112, 112))), boxes * 2)
    # torchvision's video transform: resize to 128×171, centre crop 112 (top 8, left 29)
    out = map_boxes(boxes + 20, (112, 112), InputSpec(size=(112, 112), resize=(128, 171)))
    assert np.allclose(out, [[30 * 171 / 112 - 29, 40 * 128 / 112 - 8, 70 * 171 / 112 - 29, 70 * 128 / 112 - 8]])
    # short side 224 on a 100×200 frame: 224×448, crop 224 (left 112); a box left of the crop is clipped to 0
    out = map_boxes(np.array([[0.0, 0.0, 40.0, 100.0]]), (100, 200), InputSpec(size=(224, 224), resize=(224,)))
    assert np.allclose(out, [[0, 0, 0, 224]])


def test_ground_truth_follows_the_sampled_frames():
    raw = json.loads(EXAMPLE.with_suffix(".json").read_text())
    spec = InputSpec(frames=8, size=(56, 56))
    indices = np.array([1, 3, 5, 7, 9, 11, 13, 15])
    truth = ground_truth_for(EXAMPLE, indices, (112, 112), spec)
    assert truth["class_name"] == "grow" and len(truth["bbox"]) == 8
    assert np.allclose(truth["bbox"][2], np.array(raw["bbox"][5]) / 2)
    first, last = raw["window"]                                   # (1, 11) → sampled frames 0 (=1) … 5 (=11)
    assert truth["window"] == (int(np.flatnonzero(indices >= first)[0]), int(np.flatnonzero(indices <= last)[-1]))
    assert ground_truth_for(EXAMPLE.with_name("elsewhere.mp4"), indices, (112, 112), spec) is None


def test_uploads_get_the_ground_truth_of_the_example_with_the_same_content_never_of_its_name(tmp_path):
    spec = InputSpec(frames=8, size=(56, 56))
    indices = np.arange(0, 16, 2)
    search = (analysis.EXAMPLES_DIR,)
    renamed = tmp_path / "my holiday.mp4"
    shutil.copyfile(EXAMPLE, renamed)                          # the same bytes under another name
    assert ground_truth_for(renamed, indices, (112, 112), spec, search)["class_name"] == "grow"
    impostor = tmp_path / EXAMPLE.name                         # another clip under the example's name
    shutil.copyfile(analysis.EXAMPLES_DIR / "synth_shrink_1000005.mp4", impostor)
    assert ground_truth_for(impostor, indices, (112, 112), spec, search)["class_name"] == "shrink"
    impostor.write_bytes(EXAMPLE.read_bytes()[:-10] + b"0123456789")
    assert ground_truth_for(impostor, indices, (112, 112), spec, search) is None


@pytest.fixture(scope="module")
def grad_cam():
    clip = analysis.load_clip(EXAMPLE, "synth-r2plus1d-small")
    return analysis.analyse(clip, "grad_cam")


def test_a_clip_scored_before_keeps_its_curves_ends_and_the_same_curves(grad_cam):
    from explainers.metrics import curve_ends, evaluate_map

    gradient = analysis.run_method(grad_cam.clip, "gradient")
    key = (grad_cam.clip.digest, grad_cam.clip.model_id, None, None, grad_cam.explanation.target)
    assert analysis._ends[key] == curve_ends(grad_cam.curves)          # kept when the Grad-CAM map was scored
    scored = analysis.score(gradient)
    _, alone = evaluate_map(analysis.scoring_model(grad_cam.clip.model_id), grad_cam.clip.x,
                            gradient.explanation.saliency, gradient.explanation.target, grad_cam.clip.truth)
    for kind in ("insertion", "deletion"):
        assert np.allclose(scored.curves[kind].probs, alone[kind].probs, atol=1e-5)


def test_analysis_scores_every_applicable_metric(grad_cam):
    assert set(grad_cam.metrics) == {"insertion", "deletion", "s50", "s75", "pointing", "temporal_pointing",
                                     *(f"loc_{kind}_{rule}" for kind in ("iou", "error")
                                       for rule in ("val", "mean", "energy"))}
    assert len(grad_cam.curves["insertion"].probs) == 29
    header, rows = analysis.metrics_table([grad_cam, grad_cam])
    assert header == ["metric", "better", "Grad-CAM", "Grad-CAM", "what it measures"] and len(rows) == 9 + 2
    insertion = f"{grad_cam.metrics['insertion']:.3f} ★"                 # a tie: both are the best
    assert rows[0][:4] == ["Insertion AUC (CI)", "higher", insertion, insertion]
    assert rows[1][1] == "lower" and rows[-1][2] == f"{grad_cam.explanation.forward_passes:,} + 1"


def test_scores_come_from_the_model_with_folded_batch_norms_and_equal_the_models_own(grad_cam):
    from explainers.metrics import evaluate_map

    folded, model = analysis.scoring_model("synth-r2plus1d-small"), analysis.get_model("synth-r2plus1d-small")
    assert folded is not model and folded is analysis.scoring_model("synth-r2plus1d-small")
    assert not any("BatchNorm" in type(m).__name__ for m in folded.modules())
    e = grad_cam.explanation
    own, _ = evaluate_map(model, grad_cam.clip.x, e.saliency, e.target, grad_cam.clip.truth)
    assert own.keys() == grad_cam.metrics.keys()
    assert all(abs(own[k] - v) < 1e-5 for k, v in grad_cam.metrics.items())
    transformer = analysis.get_model("synth-videomae-small")
    assert analysis.scoring_model("synth-videomae-small") is transformer          # nothing to fold: no copy


def test_the_metrics_table_marks_the_best_value_of_each_metric_by_its_direction(grad_cam):
    m = grad_cam.metrics
    other = analysis.Analysis(grad_cam.clip, grad_cam.explanation,
                              {"insertion": m["insertion"] - 0.1, "deletion": m["deletion"] - 0.05})
    _, rows = analysis.metrics_table([grad_cam, other])
    insertion, deletion = rows[0], rows[1]
    assert insertion[2].endswith("★") and not insertion[3].endswith("★")     # higher is better
    assert deletion[3].endswith("★") and not deletion[2].endswith("★")       # lower is better
    assert rows[2][3] == "–"                                                  # S50 of a map not scored for it


def test_overlay_frames_and_perturbed_strip(grad_cam):
    frames = analysis.overlay_frames(grad_cam)
    scale = analysis.VIDEO_SCALE
    assert frames.shape[0] == 16 and frames.shape[1] == 112 * scale + 16          # caption bar above
    assert frames.shape[2] == 2 * 112 * scale + 4 + 28                            # input | heatmap, colour bar
    alone = analysis.overlay_frames(grad_cam, side_by_side=False)
    assert alone.shape[2] == 112 * scale
    grid = analysis.view([grad_cam] * 4)                                          # the input, then 4 maps
    assert grid.shape[2] == 3 * 112 * scale + 2 * 4 and grid.shape[1] == 2 * (112 * scale + 16) + 4
    assert np.array_equal(grid[:, 16:16 + 112 * scale, :112 * scale], analysis.marked_frames(grad_cam.clip))
    strip = analysis.perturbed_strip(grad_cam, "deletion", 1.0)                  # 8 frames, 2 rows, numbered
    bar = 224 // 5
    assert strip.shape[:2] == (2 * (bar + 224) + 2, 4 * 224 + 3 * 2)
    assert strip[bar:bar + 224, :224].max() <= 2 * 255 * 0.5                      # everything deleted: mean colour


def test_cli_writes_files_and_its_json_reproduces_the_map(tmp_path, capsys):
    assert videoxai.main(["explain", str(EXAMPLE), "--method", "rise", "--params", '{"masks": 16}', "--seed", "3",
                          "--out", str(tmp_path / "a")]) == 0
    assert "rise: target grow" in capsys.readouterr().out
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert files == {"saliency_rise.npy", "overlay.mp4", "overlay.gif", "results.json"}
    result = json.loads((tmp_path / "a" / "results.json").read_text())[0]
    assert result["explanation"]["forward_passes"] == 17 and result["metrics"]["pointing"] >= 0
    argv = shlex.split(result["command"])
    assert argv[:3] == ["videoxai", "explain", EXAMPLE.name]
    assert videoxai.main(["explain", str(EXAMPLE), *argv[3:], "--out", str(tmp_path / "b")]) == 0
    first, again = (np.load(tmp_path / d / "saliency_rise.npy") for d in ("a", "b"))
    assert np.array_equal(first, again)


def test_cli_refuses_a_bad_file_parameter_or_target_with_a_message(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    for argv, says in (([str(bad)], "notes.mp4"), ([str(EXAMPLE), "--method", "rise", "--params", '{"masks": 1}'],
                                                   "outside"),
                       ([str(EXAMPLE), "--method", "rise", "--params", '{"maks": 10}'], "no parameter"),
                       ([str(EXAMPLE), "--target", "99"], "does not exist")):
        assert videoxai.main(["explain", *argv, "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err, err
    assert not (tmp_path / "out").exists()
    for argv, says in ((["--params", "[1]"], "a JSON object of name: value is needed"),
                       (["--params", "{bad"], "not JSON"), (["--preset", "turbo"], "invalid choice: 'turbo'")):
        with pytest.raises(SystemExit):                                      # argparse's usage line and message
            videoxai.main(["explain", str(EXAMPLE), *argv, "--out", str(tmp_path / "out")])
        assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_strip_outlines_the_part_of_each_frame_a_cropping_model_sees(grad_cam):
    own = analysis.get_model("synth-r2plus1d-small").input_spec                # no crop: the model's frames
    strip = analysis.seen_strip(grad_cam.clip, own)
    assert strip.shape == (4 * (22 + 112) + 3 * 2, 4 * 112 + 3 * 2, 3)       # 16 frames, rows of 4, captioned
    frames = analysis.marked_frames(grad_cam.clip, scale=1)
    assert np.array_equal(strip[22:134, 114:226], frames[1]) and np.array_equal(strip[-112:, -112:], frames[15])
    real = analysis.load_clip(next((analysis.EXAMPLES_DIR / "real").glob("*.mp4")), "synth-r2plus1d-small")
    cropping = InputSpec(size=(112, 112), resize=(128,))                      # 320×180 → the centre 157×158
    strip = analysis.seen_strip(real, cropping)[22:134, :199]                 # the first frame, under its number
    assert analysis.seen_strip(real, cropping).shape[1] == 4 * 199 + 3 * 2    # the whole 320×180 frames, scaled
    green = np.all(strip == render.SEEN_COLOUR, axis=-1)
    columns = np.flatnonzero(green.any(axis=0))
    left, right = (199 * (320 - 157) / 2 / 320, 199 * (320 + 157) / 2 / 320)
    assert abs(columns[0] - left) <= 2 and abs(columns[-1] - right) <= 2
