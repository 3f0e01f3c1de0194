"""Pictures for people: frame strips, ground-truth boxes (overlays, videos and figures grow here).

Everything returns numpy images (uint8 H×W×3) or writes files; nothing here imports gradio, so it is tested
without a browser.
"""
from __future__ import annotations

import numpy as np

from zoo.video import sample_indices


def frame_strip(frames: np.ndarray, count: int = 8, gap: int = 2, height: int | None = None) -> np.ndarray:
    """``count`` evenly spaced frames of a uint8 T×H×W×3 clip side by side, separated by white ``gap`` columns."""
    picked = frames[sample_indices(0, len(frames), min(count, len(frames)))]
    if height is not None and height != picked.shape[1]:
        import cv2

        width = round(picked.shape[2] * height / picked.shape[1])
        picked = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in picked])
    n, h, w, _ = picked.shape
    strip = np.full((h, n * w + (n - 1) * gap, 3), 255, np.uint8)
    for i, f in enumerate(picked):
        strip[:, i * (w + gap):i * (w + gap) + w] = f
    return strip


def draw_boxes(frames: np.ndarray, boxes: np.ndarray, visible: np.ndarray | None = None,
               colour: tuple[int, int, int] = (255, 255, 0), thickness: int = 1) -> np.ndarray:
    """Copy of uint8 T×H×W×3 frames with box t (x0, y0, x1, y1, exclusive ends) outlined on frame t."""
    out = frames.copy()
    h, w = out.shape[1:3]
    for t, (x0, y0, x1, y1) in enumerate(np.round(boxes).astype(int)):
        if (visible is not None and not visible[t]) or x1 <= x0 or y1 <= y0:
            continue
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        for k in range(thickness):
            out[t, y0 + k, x0:x1] = colour
            out[t, y1 - 1 - k, x0:x1] = colour
            out[t, y0:y1, x0 + k] = colour
            out[t, y0:y1, x1 - 1 - k] = colour
    return out
