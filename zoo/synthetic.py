"""SynthActions-10: a procedurally generated action dataset whose ground truth is known.

Each clip shows one "actor" sprite that performs one of ten actions inside a random window of frames, on a
textured background, among distractor sprites, optionally under a camera pan. The ten classes form five
time-reversed pairs and every nuisance is sampled time-symmetrically, so only temporal order carries the label:
no single frame and no unordered bag of frames can solve the task.

Ground truth per clip: label, the actor's amodal bounding box in every frame, its visibility and the action
window. Everything is deterministic from an integer seed (one ``numpy`` generator drives all randomness and the
rendering uses deterministic CPU ops), so data is regenerated from seeds instead of stored.

Run ``videoxai synth --out DIR --split test --count 20`` to write MP4 clips with their ground truth.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.draw import polygon as draw_polygon

CLASSES = (
    "move_left", "move_right", "move_up", "move_down", "grow", "shrink",
    "rotate_cw", "rotate_ccw", "appear", "disappear",
)
REVERSE = (1, 0, 3, 2, 5, 4, 7, 6, 9, 8)  # label of the time-reversed clip
HFLIP = (1, 0, 2, 3, 4, 5, 7, 6, 8, 9)    # label of the left-right mirrored clip
VFLIP = (0, 1, 3, 2, 4, 5, 7, 6, 8, 9)    # label of the up-down mirrored clip

# Seeds of the fixed splits; label = seed mod 10 keeps every split exactly balanced.
SPLIT_SEEDS = {"train": 0, "val": 900_000, "test": 1_000_000}
TEST_SIZE = 300
# Named in every benchmark row of a synthetic clip; a new version whenever some seed renders differently.
# v1 (until 2026-11-23): actor radius 10–15 px, grow/shrink from 7–10 px. v2: 12–16 px, from 8.4–12 px.
DATASET = "SynthActions-10 v2"

SPRITE_RES = 64
SHAPES = ("rect", "triangle", "ell", "tee", "arrow", "star", "ellipse", "cross", "pacman", "half_disc")


@dataclass(frozen=True)
class Difficulty:
    """Nuisance settings of one preset; the actions themselves are the same in every preset."""

    textured: bool = True
    texture_amp: tuple[float, float] = (5.0, 25.0)
    distractors: tuple[int, int] = (1, 3)
    distractor_speed: float = 0.8      # px/frame, the slowest actor action is >= 2 px/frame
    pan_prob: float = 0.5
    pan_speed: tuple[float, float] = (0.3, 1.2)
    noise_sigma: float = 8.0
    actor_radius: tuple[float, float] = (12.0, 16.0)  # grow/shrink start at 0.7–1× the smaller value


DIFFICULTIES = {
    "trivial": Difficulty(textured=False, distractors=(0, 0), pan_prob=0.0, noise_sigma=0.0),
    "easy": Difficulty(texture_amp=(5.0, 15.0), distractors=(0, 0), pan_prob=0.0, noise_sigma=4.0),
    "medium": Difficulty(texture_amp=(5.0, 20.0), distractors=(1, 1), pan_prob=0.25, noise_sigma=6.0),
    "hard": Difficulty(),
}


@dataclass
class SynthClip:
    """One rendered clip and its ground truth.

    ``video`` is uint8 T×H×W×3; ``bbox`` is T×4 (x0, y0, x1, y1 in pixels, amodal: the actor's extent at full
    opacity, clipped to the frame); ``visible`` is T bools (opacity >= 0.5); ``window`` is the inclusive action
    frame range (t0, t1).
    """

    video: np.ndarray
    label: int
    bbox: np.ndarray
    visible: np.ndarray
    window: tuple[int, int]
    seed: int
    preset: str
    extras: dict = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        return CLASSES[self.label]

    def ground_truth(self) -> dict:
        """JSON-serialisable ground truth (everything except the pixels)."""
        return {
            "dataset": DATASET, "label": self.label, "class_name": self.class_name, "seed": self.seed,
            "preset": self.preset,
            "window": list(self.window), "bbox": self.bbox.round(2).tolist(),
            "visible": self.visible.tolist(), **self.extras,
        }


# ----------------------------------------------------------------------------------------------- sprites
def _polygon_mask(points: list[tuple[float, float]], res: int) -> np.ndarray:
    """Filled polygon given in [-1, 1]² coordinates (x right, y down)."""
    mask = np.zeros((res, res), np.float32)
    xy = (np.asarray(points, np.float64) + 1.0) * 0.5 * res
    rr, cc = draw_polygon(xy[:, 1], xy[:, 0], shape=mask.shape)
    mask[rr, cc] = 1.0
    return mask


def _shape_mask(name: str, res: int) -> np.ndarray:
    """Binary mask of a canonical shape on a res×res canvas spanning [-1, 1]²; no shape is a circle."""
    c = (np.arange(res) + 0.5) / res * 2 - 1
    x, y = np.meshgrid(c, c)
    r = np.hypot(x, y)
    ang = np.arctan2(y, x)
    if name == "rect":
        return ((np.abs(x) <= 0.9) & (np.abs(y) <= 0.5)).astype(np.float32)
    if name == "ellipse":
        return ((x / 0.95) ** 2 + (y / 0.55) ** 2 <= 1).astype(np.float32)
    if name == "pacman":
        return ((r <= 0.95) & (np.abs(ang) >= 0.6)).astype(np.float32)
    if name == "half_disc":
        return ((r <= 0.95) & (y <= 0.15)).astype(np.float32)
    polys = {
        "triangle": [(0.0, -0.95), (0.9, 0.75), (-0.9, 0.75)],
        "ell": [(-0.8, -0.9), (-0.3, -0.9), (-0.3, 0.4), (0.8, 0.4), (0.8, 0.9), (-0.8, 0.9)],
        "tee": [(-0.9, -0.9), (0.9, -0.9), (0.9, -0.4), (0.25, -0.4), (0.25, 0.9), (-0.25, 0.9), (-0.25, -0.4),
                (-0.9, -0.4)],
        "arrow": [(-0.95, -0.25), (0.2, -0.25), (0.2, -0.7), (0.95, 0.0), (0.2, 0.7), (0.2, 0.25), (-0.95, 0.25)],
        "cross": [(-0.3, -0.95), (0.3, -0.95), (0.3, -0.3), (0.95, -0.3), (0.95, 0.3), (0.3, 0.3), (0.3, 0.95),
                  (-0.3, 0.95), (-0.3, 0.3), (-0.95, 0.3), (-0.95, -0.3), (-0.3, -0.3)],
        "star": [((0.95 if k % 2 == 0 else 0.42) * math.cos(math.pi * k / 5 - math.pi / 2),
                  (0.95 if k % 2 == 0 else 0.42) * math.sin(math.pi * k / 5 - math.pi / 2)) for k in range(10)],
    }
    return _polygon_mask(polys[name], res)


@lru_cache(maxsize=1)
def _shape_bank() -> torch.Tensor:
    """All shapes as anti-aliased alpha masks (len(SHAPES)×1×64×64), rendered at 4× and average-pooled."""
    hi = np.stack([_shape_mask(s, SPRITE_RES * 4) for s in SHAPES])[:, None]
    return F.avg_pool2d(torch.from_numpy(hi), 4)


def _sprite(rng: np.random.Generator, bg_mean: np.ndarray) -> torch.Tensor:
    """A random RGBA sprite (4×64×64, colours in [0, 255], alpha in [0, 1])."""
    alpha = _shape_bank()[rng.integers(len(SHAPES))][0]
    colour = _distinct_colour(rng, bg_mean)
    rgb = torch.from_numpy(colour).float()[:, None, None].expand(3, SPRITE_RES, SPRITE_RES).clone()
    if rng.random() < 0.5:  # stripes of a second colour, in sprite coordinates so they rotate with it
        period, phase = rng.uniform(0.25, 0.6), rng.uniform(0, 1)
        c = torch.linspace(-1, 1, SPRITE_RES)
        stripes = (((c[None, :] + c[:, None] * rng.uniform(-1, 1)) / period + phase) % 1.0) < 0.5
        rgb = torch.where(stripes[None], torch.from_numpy(_distinct_colour(rng, bg_mean)).float()[:, None, None], rgb)
    if rng.random() < 0.4:  # a black or white outline
        grown = F.max_pool2d(alpha[None, None], 5, stride=1, padding=2)[0, 0]
        ring = (grown - alpha).clamp(min=0)
        rgb = rgb * (1 - ring) + (0.0 if rng.random() < 0.5 else 255.0) * ring
        alpha = grown
    return torch.cat([rgb, alpha[None]], 0)


def _distinct_colour(rng: np.random.Generator, bg_mean: np.ndarray) -> np.ndarray:
    for _ in range(100):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - bg_mean) >= 90:
            return colour
    return 255.0 - bg_mean


# ----------------------------------------------------------------------------------------------- scene
def _background(rng: np.random.Generator, size: int, d: Difficulty) -> torch.Tensor:
    """World canvas (3×size×size, float 0..255): smooth colour field + texture + optional grating and disks."""
    if not d.textured:
        return torch.full((3, size, size), 110.0)
    g = int(rng.integers(3, 10))
    coarse = rng.normal(rng.uniform(50, 200, (3, 1, 1)), rng.uniform(20, 70, (3, 1, 1)), (3, g, g))
    canvas = F.interpolate(torch.from_numpy(coarse).float()[None], size=(size, size), mode="bicubic",
                           align_corners=False)[0]
    k = int(rng.integers(12, 40))
    texture = F.interpolate(torch.from_numpy(rng.normal(0, 1, (1, 1, k, k))).float(), size=(size, size),
                            mode="bilinear", align_corners=False)[0]
    canvas = canvas + rng.uniform(*d.texture_amp) * texture
    if rng.random() < 0.4:
        theta, freq = rng.uniform(0, math.pi), rng.uniform(0.05, 0.3)
        c = torch.arange(size, dtype=torch.float32)
        wave = torch.sin(freq * (c[None, :] * math.cos(theta) + c[:, None] * math.sin(theta)))
        canvas = canvas + rng.uniform(0.3, 0.8) * d.texture_amp[1] * wave
    if rng.random() < 0.3:
        c = torch.arange(size, dtype=torch.float32)
        for _ in range(int(rng.integers(2, 6))):
            cx, cy, rad = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(3, 9)
            disk = ((c[None, :] - cx) ** 2 + (c[:, None] - cy) ** 2 <= rad ** 2).float()
            canvas = canvas * (1 - disk) + torch.from_numpy(rng.uniform(0, 255, (3, 1, 1))).float() * disk
    return canvas.clamp(0, 255)


@dataclass
class _Track:
    """Per-frame pose of one sprite in screen pixels: centre x/y, radius, angle (rad), opacity."""

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    opacity: np.ndarray


def _actor_track(rng: np.random.Generator, label: int, frames: int, d: Difficulty) -> tuple[_Track, tuple[int, int]]:
    """Actor pose relative to its (yet unplaced) midpoint, and the inclusive action window."""
    length = int(rng.integers(3, 9)) if label >= 8 else int(rng.integers(6, 13))
    length = min(length, frames)
    t0 = int(rng.integers(0, frames - length + 1))
    t = np.arange(frames)
    u = np.clip((t - t0) / max(length - 1, 1), 0.0, 1.0)  # progress 0 before, 1 after the window
    s = np.full(frames, rng.uniform(*d.actor_radius))
    x, y = np.zeros(frames), np.zeros(frames)
    angle = np.full(frames, rng.uniform(0, 2 * math.pi))
    opacity = np.ones(frames)
    if label < 4:
        travel = rng.uniform(24, 44) * (u - 0.5)
        sign = -1 if label in (0, 2) else 1
        if label < 2:
            x = sign * travel
        else:
            y = sign * travel
    elif label < 6:
        small, ratio = d.actor_radius[0] * rng.uniform(0.7, 1.0), rng.uniform(1.7, 2.2)
        s = small * ratio ** (u if label == 4 else 1 - u)
    elif label < 8:
        # 15–30°/frame: below half the 72° symmetry of the star (the most symmetric shape), so the sense is visible.
        step = math.radians(rng.uniform(15, 30)) * (length - 1)
        angle = angle + (1 if label == 6 else -1) * step * (u - 0.5)  # image y points down: +angle is clockwise
    else:
        opacity = u if label == 8 else 1 - u
    return _Track(x, y, s, angle, opacity), (t0, t0 + length - 1)


def _distractor_track(rng: np.random.Generator, frames: int, d: Difficulty) -> _Track:
    """A class-independent, time-symmetric nuisance motion: jitter, drift, spin or pulse."""
    t = np.arange(frames) - (frames - 1) / 2
    s = np.full(frames, rng.uniform(7, 13))
    angle = np.full(frames, rng.uniform(0, 2 * math.pi))
    x, y = np.zeros(frames), np.zeros(frames)
    mode = rng.integers(4)
    if mode == 0:
        x, y = np.cumsum(rng.normal(0, 0.6, (2, frames)), axis=1)
        x, y = x - x.mean(), y - y.mean()
        angle = angle + np.radians(rng.normal(0, 3, frames))
    elif mode == 1:
        heading, speed = rng.uniform(0, 2 * math.pi), rng.uniform(0.3, d.distractor_speed)
        x, y = speed * t * math.cos(heading), speed * t * math.sin(heading)
    elif mode == 2:
        angle = angle + math.radians(rng.uniform(2, 5)) * t * rng.choice([-1, 1])
    else:
        s = s * (1 + rng.uniform(0.1, 0.2) * np.sin(2 * math.pi * t / rng.uniform(6, 12) + rng.uniform(0, 2 * math.pi)))
    return _Track(x, y, s, angle, np.ones(frames))


def _place(rng: np.random.Generator, track: _Track, cam: np.ndarray, size: int, margin: float) -> _Track:
    """Shift a relative track by a midpoint drawn uniformly over every position that keeps it in view."""
    extent = track.radius + margin
    lo = [np.max(extent - (track.x - cam[:, 0])), np.max(extent - (track.y - cam[:, 1]))]
    hi = [np.min(size - extent - (track.x - cam[:, 0])), np.min(size - extent - (track.y - cam[:, 1]))]
    mid = [rng.uniform(a, b) if b > a else (a + b) / 2 for a, b in zip(lo, hi)]
    return replace(track, x=track.x + mid[0] - cam[:, 0], y=track.y + mid[1] - cam[:, 1])


def _render_sprites(sprites: torch.Tensor, tracks: list[_Track], size: int) -> torch.Tensor:
    """Render N sprites over T frames with one grid_sample: returns N×T×4×size×size (rgb, alpha)."""
    n, frames = len(tracks), len(tracks[0].x)
    pose = torch.from_numpy(np.stack([[k.x, k.y, k.radius, k.angle] for k in tracks])).float()  # N×4×T
    cx, cy, r, a = pose.unbind(1)
    cos, sin = torch.cos(a), torch.sin(a)
    half = size / 2
    # Output pixel p = half·(g + 1) − 0.5; sprite coords q = R(−a)·(p − c)/r.
    px0, py0 = (half - 0.5 - cx) / r, (half - 0.5 - cy) / r
    theta = torch.stack([
        torch.stack([cos * half / r, sin * half / r, cos * px0 + sin * py0], -1),
        torch.stack([-sin * half / r, cos * half / r, -sin * px0 + cos * py0], -1),
    ], -2).reshape(n * frames, 2, 3)
    grid = F.affine_grid(theta, [n * frames, 4, size, size], align_corners=False)
    src = sprites[:, None].expand(n, frames, 4, SPRITE_RES, SPRITE_RES).reshape(n * frames, 4, SPRITE_RES, SPRITE_RES)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False).view(
        n, frames, 4, size, size)


def make_clip(seed: int, preset: str | Difficulty = "hard", frames: int = 16, size: int = 112,
              hide_actor: bool = False) -> SynthClip:
    """Render clip ``seed`` (label = seed mod 10) with the nuisances of ``preset``.

    ``hide_actor`` renders the same scene without the actor (a control: a model must then be at chance).
    """
    d = DIFFICULTIES[preset] if isinstance(preset, str) else preset
    rng = np.random.default_rng(seed)
    label = seed % len(CLASSES)
    pad = size // 7
    world = _background(rng, size + 2 * pad, d)
    bg_mean = world.mean((1, 2)).numpy()

    cam = np.zeros((frames, 2))
    if rng.random() < d.pan_prob:
        heading, speed = rng.uniform(0, 2 * math.pi), rng.uniform(*d.pan_speed)
        cam = np.outer(np.arange(frames) - (frames - 1) / 2, [math.cos(heading), math.sin(heading)]) * speed

    actor, window = _actor_track(rng, label, frames, d)
    actor = _place(rng, actor, cam, size, margin=2.0)
    tracks = [actor] + [_place(rng, _distractor_track(rng, frames, d), cam, size, margin=-4.0)
                        for _ in range(int(rng.integers(d.distractors[0], d.distractors[1] + 1)))]
    sprites = torch.stack([_sprite(rng, bg_mean) for _ in tracks])
    layers = _render_sprites(sprites, tracks, size)
    depth = rng.permutation(len(tracks))

    # Background frames: the world canvas seen through the moving camera.
    shift = torch.from_numpy(cam).float() / (size + 2 * pad) * 2
    theta = torch.zeros(frames, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = size / (size + 2 * pad)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [frames, 3, size, size], align_corners=False)
    video = F.grid_sample(world[None].expand(frames, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                          align_corners=False)
    for i in depth:
        if i == 0 and hide_actor:
            continue
        alpha = layers[i, :, 3:] * torch.from_numpy(tracks[i].opacity).float()[:, None, None, None]
        video = video * (1 - alpha) + layers[i, :, :3] * alpha
    sigma = rng.uniform(0, d.noise_sigma)
    if sigma > 0:
        video = video + torch.from_numpy(rng.normal(0, sigma, video.shape)).float()
    video = video.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    actor_alpha = layers[0, :, 3] > 0.5
    bbox = np.zeros((frames, 4), np.float32)
    for t in range(frames):
        ys, xs = torch.nonzero(actor_alpha[t], as_tuple=True)
        if len(xs):
            bbox[t] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    visible = actor.opacity >= 0.5
    name = preset if isinstance(preset, str) else "custom"
    extras = {"pan": bool(np.any(cam)), "n_distractors": len(tracks) - 1, "hide_actor": hide_actor}
    return SynthClip(video, label, bbox, visible, window, seed, name, extras)


def split_seeds(split: str, count: int | None = None) -> list[int]:
    """The seeds of a fixed split (``test`` has TEST_SIZE clips, 30 per class)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(SPLIT_SEEDS)}")
    count = TEST_SIZE if count is None else count
    return list(range(SPLIT_SEEDS[split], SPLIT_SEEDS[split] + count))


def render_batch(seeds: list[int], preset: str | Difficulty = "hard", frames: int = 16, size: int = 112,
                 hide_actor: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Clips of ``seeds`` as one uint8 array N×T×H×W×3 and their labels."""
    clips = [make_clip(s, preset, frames, size, hide_actor) for s in seeds]
    return np.stack([c.video for c in clips]), np.array([c.label for c in clips])


def write_examples(out: Path, seeds: Sequence[int], preset: str = "hard", fps: int = 8) -> list[Path]:
    """Encode the clips of ``seeds`` as H.264 MP4 with a ``<name>.json`` ground truth beside each."""
    from zoo.video import write_mp4

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        clip = make_clip(seed, preset)
        path = out / f"synth_{clip.class_name}_{seed}.mp4"
        write_mp4(path, clip.video, fps=fps)
        path.with_suffix(".json").write_text(json.dumps({**clip.ground_truth(), "fps": fps}, indent=1))
        paths.append(path)
    return paths


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@cache
def _truth_index(folder: Path) -> dict[str, Path]:
    """SHA-256 of every clip in ``folder`` that has a ground-truth file, mapped to that file."""
    return {file_digest(clip): clip.with_suffix(".json") for clip in sorted(folder.iterdir())
            if clip.suffix != ".json" and clip.is_file() and clip.with_suffix(".json").exists()}


def ground_truth_for(video_path: str | Path, indices: np.ndarray, source_hw: tuple[int, int], spec,
                     search: tuple[Path, ...] = (), truth_file: str | Path | None = None) -> dict | None:
    """The ground truth of a clip (``truth_file`` if given, else ``<name>.json`` beside it, or that of the clip in
    one of ``search`` with the same content, whatever the file is called: SHA-256 of the bytes), mapped onto
    the model's sampled frames: ``bbox`` per sampled frame in model pixels, ``visible``, ``window`` as the
    first/last sampled frame inside the action (None if no sampled frame is, or none is given), and ``label`` /
    ``class_name`` (None if not given). None for clips without one.

    The file holds ``bbox``: one [x0, y0, x1, y1] per source frame in source pixels (required); ``visible``: one
    bool per source frame (default: all); ``window``: [first, last] source frame of the action; ``label``: the
    class index; ``class_name``. The examples written by ``write_examples`` have all of them. A malformed file
    raises ``ValueError`` naming it.
    """
    from zoo.video import map_boxes

    path = Path(video_path)
    beside = path.with_suffix(".json")
    found = [Path(truth_file)] if truth_file else [beside] if beside.exists() else []
    if not found and search:
        digest = file_digest(path)
        found = [index[digest] for index in map(_truth_index, search) if digest in index][:1]
    if not found:
        return None
    try:
        raw = json.loads(found[0].read_text())
        boxes = np.asarray(raw["bbox"], float).reshape(-1, 4)
        visible = np.asarray(raw.get("visible", [True] * len(boxes)), bool)
        if not len(boxes) or visible.shape != (len(boxes),):
            raise ValueError("needs one box (and one 'visible' flag, if given) per source frame")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{found[0]}: not a ground-truth file ({error!r}); expected 'bbox' with one "
                         f"[x0, y0, x1, y1] per frame, and optionally 'visible', 'window', 'label', "
                         f"'class_name'") from None
    indices = np.minimum(np.asarray(indices), len(boxes) - 1)
    window = raw.get("window")
    inside = np.flatnonzero((indices >= window[0]) & (indices <= window[1])) if window else []
    return {"label": raw.get("label"), "class_name": raw.get("class_name"),
            "bbox": map_boxes(boxes[indices], source_hw, spec), "visible": visible[indices],
            "window": (int(inside[0]), int(inside[-1])) if len(inside) else None}


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Render SynthActions-10 clips as MP4 with their ground truth.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default="test", choices=sorted(SPLIT_SEEDS))
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", help="these clips instead of the first --count of --split")
    parser.add_argument("--preset", default="hard", choices=sorted(DIFFICULTIES))
    args = parser.parse_args(argv)
    for p in write_examples(args.out, args.seeds or split_seeds(args.split, args.count), args.preset):
        print(p)
    return 0
