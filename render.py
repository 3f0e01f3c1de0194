"""Pictures for people: heatmap overlays, tracks and supervoxel outlines, frame strips and grids, GIF files
(MP4: ``zoo.video.write_mp4``), and the plotly figures (per-frame importance, insertion/deletion curves).

Images are numpy uint8 arrays (frames: T×H×W×3 RGB); figures are ``plotly.graph_objects.Figure``. Nothing here
imports gradio, so all of it is tested without a browser.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots
from skimage.segmentation import find_boundaries

from zoo.video import sample_indices

COLOUR_MAPS = ("jet", "inferno", "viridis", "turbo", "magma", "gray")
TRUTH_COLOUR = (255, 255, 0)
TRACK_COLOUR = (0, 255, 255)
OUTLINE_COLOUR = (255, 255, 255)
SEEN_COLOUR = (0, 255, 0)          # the part of a frame a cropping model sees


# ------------------------------------------------------------------------------------------- heatmaps
def colourise(saliency: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Values in [0, 1] (any shape) → uint8 RGB through a matplotlib colour map (256-entry lookup table). OpenCV
    scales, rounds and looks up: numpy's clip and fancy indexing took 7× as long on an overlay's 2 million values."""
    lut = (matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    values = np.asarray(saliency, np.float32)
    levels = cv2.convertScaleAbs(cv2.max(np.ascontiguousarray(values).reshape(-1, 1), 0.0), alpha=255)
    return cv2.applyColorMap(levels, lut[:, None, :]).reshape(*values.shape, 3)


def overlay(frames: np.ndarray, saliency: np.ndarray, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """Frames blended with their colourised map: (1 − alpha)·frame + alpha·colour. The map (T×h×w in [0, 1]) is
    resized bilinearly to the frames if their sizes differ."""
    t, h, w, _ = frames.shape
    s = np.asarray(saliency, np.float32)
    if s.shape[1:] != (h, w):
        s = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in s])
    colours = colourise(s, cmap)
    return cv2.addWeighted(np.ascontiguousarray(frames, np.uint8).reshape(t * h, w, 3), 1 - alpha,
                           colours.reshape(t * h, w, 3), alpha, 0).reshape(t, h, w, 3)


# ------------------------------------------------------------------------------------------- drawings
def draw_boxes(frames: np.ndarray, boxes: np.ndarray, visible: np.ndarray | None = None,
               colour: tuple[int, int, int] = TRUTH_COLOUR, thickness: int = 1) -> np.ndarray:
    """Copy of the frames with box t (x0, y0, x1, y1, exclusive ends) outlined on frame t."""
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


def draw_tracks(frames: np.ndarray, positions: np.ndarray, tracked: np.ndarray, tail: int = 3,
                colour: tuple[int, int, int] = TRACK_COLOUR) -> np.ndarray:
    """Copy of the frames with AOSA's anchor tracks: on frame t, each anchor still tracked at t as a dot, with a
    line through its last ``tail`` positions. ``positions``: N×T×2 (row, column) pixels; ``tracked``: N×T."""
    out = np.ascontiguousarray(frames.copy())
    pos = np.round(np.asarray(positions)).astype(np.int32)[..., ::-1]          # (x, y) for OpenCV
    tracked = np.asarray(tracked, bool)
    for t in range(len(out)):
        for n in np.flatnonzero(tracked[:, t]):
            start = t
            while start > max(0, t - tail) and tracked[n, start - 1]:
                start -= 1
            if start < t:
                cv2.polylines(out[t], [pos[n, start:t + 1]], False, colour, 1, cv2.LINE_AA)
            cv2.circle(out[t], tuple(int(v) for v in pos[n, t]), 1, colour, -1, cv2.LINE_AA)
    return out


def draw_outlines(frames: np.ndarray, labels: np.ndarray, colour: tuple[int, int, int] = OUTLINE_COLOUR) -> np.ndarray:
    """Copy of the frames with the borders of supervoxels (T×H×W integer labels) drawn on every frame."""
    out = frames.copy()
    for t in range(len(out)):
        out[t][find_boundaries(np.asarray(labels[t]), mode="inner", background=-1)] = colour
    return out


def caption(frames: np.ndarray, text: str | list[str], height: int = 16) -> np.ndarray:
    """Frames with a black title bar of ``height`` pixels above them: one text for all, or one per frame."""
    t, _, w, _ = frames.shape
    texts = [text] * t if isinstance(text, str) else text
    bars = np.zeros((t, height, w, 3), np.uint8)
    for bar, line in zip(bars, texts):
        cv2.putText(bar, line, (3, height - 4), cv2.FONT_HERSHEY_SIMPLEX, height / 40, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return np.concatenate([bars, frames], axis=1)


def colour_bar(frames: np.ndarray, cmap: str = "jet", width: int = 28) -> np.ndarray:
    """Frames with the colour map's scale at their right: the map's maximum at the top, 0 at the bottom."""
    t, h, _, _ = frames.shape
    panel = np.full((h, width, 3), 255, np.uint8)
    panel[12:h - 12, 4:14] = colourise(np.linspace(1, 0, h - 24), cmap)[:, None]
    for text, y in (("max", 9), ("0", h - 2)):
        cv2.putText(panel, text, (2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([frames, np.broadcast_to(panel, (t, h, width, 3))], axis=2)


def enlarge(frames: np.ndarray, factor: int) -> np.ndarray:
    """Frames scaled up by an integer factor (nearest neighbour keeps boxes and outlines crisp)."""
    return frames if factor <= 1 else frames.repeat(factor, axis=1).repeat(factor, axis=2)


# ------------------------------------------------------------------------------------------- layouts
def frame_strip(frames: np.ndarray, count: int = 8, gap: int = 2, height: int | None = None,
                columns: int | None = None, numbered: bool = False) -> np.ndarray:
    """``count`` evenly spaced frames of a clip in rows of ``columns`` (one row by default), separated by white
    ``gap`` lines; ``numbered`` captions each with its index in ``frames``."""
    indices = sample_indices(0, len(frames), min(count, len(frames)))
    picked = frames[indices]
    if height is not None and height != picked.shape[1]:
        width = round(picked.shape[2] * height / picked.shape[1])
        picked = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in picked])
    if numbered:
        picked = caption(picked, [str(i) for i in indices], height=max(16, picked.shape[1] // 5))
    return tile([p[None] for p in picked], columns=columns or len(picked), gap=gap)[0]


def beside(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two clips of the same length and height side by side, with a white gap."""
    white = np.full((*left.shape[:2], gap, 3), 255, np.uint8)
    return np.concatenate([left, white, right], axis=2)


def tile(clips: list[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Clips of equal shape T×H×W×3 in a grid, ``columns`` wide, with white gaps: one clip T×H'×W'×3."""
    t, h, w, _ = clips[0].shape
    rows = -(-len(clips) // columns)
    cols = min(columns, len(clips))
    out = np.full((t, rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i, clip in enumerate(clips):
        r, c = divmod(i, columns)
        out[:, r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = clip
    return out


# ------------------------------------------------------------------------------------------- files
def write_gif(path: str | Path, frames: np.ndarray, fps: float = 4.0) -> Path:
    """An endlessly looping GIF, each frame with its own 256-colour octree palette (much faster than median cut)."""
    path = Path(path)
    images = [Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


# ------------------------------------------------------------------------------------------- figures
def frame_importance_figure(series: dict[str, np.ndarray], window: tuple[int, int] | None = None,
                            frame_numbers: np.ndarray | None = None) -> go.Figure:
    """Share of each method's saliency per frame: bars for one method, lines for several; the ground-truth action
    window (sampled-frame indices) is shaded. Hover shows the source frame number when given."""
    fig = go.Figure()
    for name, values in series.items():
        x = np.arange(len(values))
        custom = frame_numbers if frame_numbers is not None else x
        kind = go.Bar if len(series) == 1 else go.Scatter
        fig.add_trace(kind(x=x, y=np.asarray(values), name=name, customdata=custom,
                           hovertemplate="sampled frame %{x} (source frame %{customdata}): %{y:.1%}<extra>"
                                         + name + "</extra>"))
    if window is not None:
        fig.add_vrect(x0=window[0] - 0.5, x1=window[1] + 0.5, fillcolor="gold", opacity=0.2, line_width=0,
                      annotation_text="action (ground truth)", annotation_position="top left")
    fig.update_layout(xaxis_title="sampled frame", yaxis_title="share of the saliency", yaxis_tickformat=".0%",
                      height=300, margin=dict(l=50, r=10, t=20, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


CURVES_PX, LEGEND_LINE_PX = 300, 21     # the curves' figure without a legend, and what each method's line adds


def curves_figure(curves: dict[str, dict], step_fraction: float | None = None) -> go.Figure:
    """Insertion (↑) and deletion (↓) curves of one or more methods side by side, one legend line per method with
    both AUCs (clicking it hides both curves), under the plots: the figure grows by a line per method, so a long
    comparison's legend never covers the axes.

    ``curves``: method name → {"insertion": Curve, "deletion": Curve} (``explainers.metrics.Curve``);
    ``step_fraction`` draws a marker line at the step shown next to the figure.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Insertion (higher is better)", "Deletion (lower is better)"),
                        horizontal_spacing=0.12)
    colours = matplotlib.colormaps["tab10"].colors
    for i, (name, pair) in enumerate(curves.items()):
        colour = "rgb({:.0f},{:.0f},{:.0f})".format(*(255 * np.array(colours[i % 10])))
        for col, kind in enumerate(("insertion", "deletion"), 1):
            c = pair[kind]
            fig.add_trace(go.Scatter(x=c.fractions, y=c.probs, mode="lines+markers", marker_size=4,
                                     line=dict(color=colour, dash="solid" if kind == "insertion" else "dot"),
                                     name=f"{name}: insertion AUC {pair['insertion'].auc:.3f}, deletion AUC "
                                          f"{pair['deletion'].auc:.3f}", legendgroup=name,
                                     showlegend=kind == "insertion",
                                     hovertemplate=f"%{{x:.0%}} of the clip: p = %{{y:.3f}}<extra>{name} {kind}"
                                                   "</extra>"),
                          row=1, col=col)
    if step_fraction is not None:
        for col in (1, 2):
            fig.add_vline(x=step_fraction, line_dash="dot", line_color="grey", row=1, col=col)
    fig.update_xaxes(title_text="share inserted", tickformat=".0%", range=[0, 1], col=1)
    fig.update_xaxes(title_text="share deleted", tickformat=".0%", range=[0, 1], col=2)
    fig.update_yaxes(title_text="p(target class)", range=[0, 1.02], col=1)
    fig.update_yaxes(range=[0, 1.02], col=2)
    fig.update_annotations(font_size=12)
    legend = LEGEND_LINE_PX * len(curves)
    fig.update_layout(height=CURVES_PX + legend, margin=dict(l=50, r=10, t=40, b=60 + legend),
                      legend=dict(yref="container", yanchor="bottom", y=0, x=0, font_size=11, tracegroupgap=2))
    return fig
