"""Pictures and figures: sizes, colour mapping, drawings, files and plotly traces, checked without a browser."""
import numpy as np
import pytest
from PIL import Image

import render
from explainers.metrics import Curve
from zoo.video import read_clip, write_mp4


def test_frame_strip_layout():
    frames = np.stack([np.full((10, 12, 3), i * 10, np.uint8) for i in range(16)])
    strip = render.frame_strip(frames, count=4, gap=2)
    assert strip.shape == (10, 4 * 12 + 3 * 2, 3)
    assert [strip[0, i * 14, 0] for i in range(4)] == [20, 60, 100, 140]  # frames 2, 6, 10, 14
    assert np.all(strip[:, 12:14] == 255)
    assert render.frame_strip(frames, count=4, height=20).shape[0] == 20
    grid = render.frame_strip(frames, count=16, columns=4, numbered=True)    # rows of 4, each under its number
    assert grid.shape == (4 * (16 + 10) + 3 * 2, 4 * 12 + 3 * 2, 3)
    assert grid[28 + 16, 0, 0] == 40 and grid[-1, -1, 0] == 150                # frames 4 and 15
    assert grid[:16, :12].max() == 255 and grid[:16, :12].min() == 0          # a white number on black


def test_draw_boxes_outlines_only_visible_frames():
    frames = np.zeros((2, 20, 20, 3), np.uint8)
    out = render.draw_boxes(frames, np.array([[2, 3, 10, 12], [2, 3, 10, 12]]), visible=np.array([True, False]))
    assert np.all(out[0, 3, 2:10] == (255, 255, 0)) and np.all(out[0, 11, 2:10] == (255, 255, 0))
    assert np.all(out[0, 3:12, 9] == (255, 255, 0)) and out[0, 6, 5].sum() == 0
    assert out[1].sum() == 0 and frames.sum() == 0


def test_colour_map_ends_and_overlay_blend():
    jet = render.colourise(np.array([0.0, 1.0]), "jet")
    assert tuple(jet[0]) == (0, 0, 128) and tuple(jet[1]) == (128, 0,
                                                              0)          # matplotlib's jet: dark blue → dark red
    assert tuple(render.colourise(np.array([0.0, 1.0]), "gray")[1]) == (255, 255, 255)
    frames = np.full((3, 8, 10, 3), 100, np.uint8)
    saliency = np.zeros((3, 4, 5), np.float32)
    saliency[1] = 1.0
    out = render.overlay(frames, saliency, "gray", alpha=0.5)                       # map resized 4×5 → 8×10
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.all(out[0] == 50) and np.all(out[1] == 178)                          # (100 + 0) / 2, (100 + 255) / 2
    assert np.array_equal(render.overlay(frames, saliency, alpha=0.0), frames)


def test_tracks_and_outlines_are_drawn_where_they_are():
    frames = np.zeros((3, 20, 20, 3), np.uint8)
    positions = np.array([[[5, 5], [5, 8], [5, 11]]])                              # row 5, moving right
    tracked = np.array([[True, True, False]])
    out = render.draw_tracks(frames, positions, tracked)
    assert out[0, 5, 5].any() and out[1, 5, 8].any() and out[1, 5, 6].any()       # dot and its tail
    assert out[2].sum() == 0                                                       # lost at frame 2: nothing drawn
    labels = np.zeros((1, 20, 20), int)
    labels[:, :, 10:] = 1
    edges = render.draw_outlines(np.zeros((1, 20, 20, 3), np.uint8), labels)[0, :, :, 0] > 0
    assert edges[:, 9].all() and edges[:, 10].all() and not edges[:, :9].any() and not edges[:, 11:].any()


def test_caption_enlarge_and_tile_sizes():
    clip = np.zeros((4, 10, 12, 3), np.uint8)
    assert render.caption(clip, "x", height=16).shape == (4, 26, 12, 3)
    assert render.enlarge(clip, 3).shape == (4, 30, 36, 3)
    grid = render.tile([clip] * 5, columns=3, gap=2)
    assert grid.shape == (4, 2 * 10 + 2, 3 * 12 + 2 * 2, 3)
    assert np.all(grid[:, 12:, 28:] == 255)                                       # the empty sixth cell is white


def test_gif_and_mp4_files(tmp_path):
    frames = np.stack([np.full((32, 48, 3), (i * 15, 100, 200 - i * 10), np.uint8) for i in range(16)])
    gif = render.write_gif(tmp_path / "a.gif", frames, fps=4)
    with Image.open(gif) as im:
        assert im.n_frames == 16 and im.info["duration"] == 250 and im.info["loop"] == 0
        im.seek(7)
        assert np.abs(np.asarray(im.convert("RGB"), int) - frames[7]).max() <= 8
    mp4 = write_mp4(tmp_path / "a.mp4", frames, fps=4)
    import av
    with av.open(str(mp4)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
    assert len(read_clip(mp4, 16).frames) == 16 and read_clip(mp4, 16).info.frames == 16


def test_frame_importance_figure_traces_and_window():
    fig = render.frame_importance_figure({"grad_cam": np.full(16, 1 / 16)}, window=(2, 9))
    assert [t.type for t in fig.data] == ["bar"] and len(fig.data[0].y) == 16
    assert fig.layout.shapes[0].x0 == 1.5 and fig.layout.shapes[0].x1 == 9.5
    fig = render.frame_importance_figure({"a": np.ones(16) / 16, "b": np.ones(16) / 16})
    assert [t.type for t in fig.data] == ["scatter", "scatter"] and not fig.layout.shapes


def test_curves_figure_has_one_trace_per_method_and_curve():
    fractions = np.linspace(0, 1, 29)
    pair = {"insertion": Curve(fractions, fractions, 0.5), "deletion": Curve(fractions, 1 - fractions, 0.5)}
    fig = render.curves_figure({"grad_cam": pair, "occlusion": pair}, step_fraction=0.25)
    assert len(fig.data) == 4
    assert [t.showlegend for t in fig.data] == [True, False] * 2                  # one legend line per method
    assert fig.data[0].name == "grad_cam: insertion AUC 0.500, deletion AUC 0.500"
    assert fig.data[0].legendgroup == fig.data[1].legendgroup != fig.data[2].legendgroup    # one click hides both
    assert fig.layout.height == render.CURVES_PX + 2 * render.LEGEND_LINE_PX     # the legend's lines below the plots
    assert fig.data[0].xaxis == "x" and fig.data[1].xaxis == "x2"
    assert [t.line.dash for t in fig.data] == ["solid", "dot"] * 2                  # insertion and deletion differ
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color   # one colour per method
    assert [s.x0 for s in fig.layout.shapes] == [pytest.approx(0.25)] * 2


def test_captions_per_frame_and_a_colour_bar_from_the_maximum_down_to_zero():
    frames = np.zeros((2, 100, 40, 3), np.uint8)
    captioned = render.caption(frames, ["frame 0", "frame 1"])
    assert captioned.shape == (2, 116, 40, 3) and not np.array_equal(captioned[0, :16], captioned[1, :16])
    barred = render.colour_bar(frames, "gray")
    assert barred.shape == (2, 100, 68, 3) and np.array_equal(barred[:, :, :40], frames)
    column = barred[0, 12:88, 40 + 8, 0]
    assert column[0] == 255 and column[-1] == 0 and np.all(np.diff(column.astype(int)) <= 0)   # max on top
    assert render.beside(frames, barred).shape == (2, 100, 40 + 4 + 68, 3)
