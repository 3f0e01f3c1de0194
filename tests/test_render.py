"""Pictures: frame strips and ground-truth boxes."""
import numpy as np

from render import draw_boxes, frame_strip


def test_frame_strip_layout():
    frames = np.stack([np.full((10, 12, 3), i * 10, np.uint8) for i in range(16)])
    strip = frame_strip(frames, count=4, gap=2)
    assert strip.shape == (10, 4 * 12 + 3 * 2, 3)
    assert [strip[0, i * 14, 0] for i in range(4)] == [20, 60, 100, 140]  # frames 2, 6, 10, 14
    assert np.all(strip[:, 12:14] == 255)
    assert frame_strip(frames, count=4, height=20).shape[0] == 20


def test_draw_boxes_outlines_only_visible_frames():
    frames = np.zeros((2, 20, 20, 3), np.uint8)
    out = draw_boxes(frames, np.array([[2, 3, 10, 12], [2, 3, 10, 12]]), visible=np.array([True, False]))
    assert np.all(out[0, 3, 2:10] == (255, 255, 0)) and np.all(out[0, 11, 2:10] == (255, 255, 0))
    assert np.all(out[0, 3:12, 9] == (255, 255, 0)) and out[0, 6, 5].sum() == 0
    assert out[1].sum() == 0 and frames.sum() == 0
