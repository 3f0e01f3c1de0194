"""Video files in and out: probe, decode T uniformly sampled frames, preprocess for a model, write H.264.

Decoding uses PyAV (FFmpeg). The container is probed first (metadata only) so that bad input is rejected before
any frame is decoded; then the packets' timestamps give every frame's time, and each sampled frame is decoded from
the keyframe before it (a seek when that lies ahead), so a long clip costs only the stretches that lead to its
sampled frames. Every frame decoded on the way is checked for decoding errors (FFmpeg's corrupt flag), which
random-access readers such as decord pass over in silence.

Every problem with a file raises a subclass of ``VideoError`` with a message meant for a person; recoverable
oddities (fewer frames than requested, an alpha channel, a truncated tail) become ``Clip.warnings``. Rotation
metadata (phones) is honoured: frames come out as a player shows them. A decoded clip's frame count is what the
decoder indexed, not the container's estimate (which is far off for variable-frame-rate files).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from zoo.cards import InputSpec


class VideoError(ValueError):
    """A video file cannot be used; the message says why in plain words."""


class NotAVideoError(VideoError):
    pass


class StillImageError(NotAVideoError):
    pass


class EmptyVideoError(VideoError):
    pass


class CorruptVideoError(VideoError):
    pass


class VideoTooLargeError(VideoError):
    pass


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds that keep decoding cheap whatever the upload: over a limit, a clear error instead of a stall.

    Frames are decoded at most at ``decode_side`` pixels on their longer side (huge resolutions are shrunk
    while decoding); files above ``max_pixels`` per frame, ``max_bytes`` or ``max_duration_s`` are refused.
    """

    max_bytes: int = 1 << 30
    max_duration_s: float = 4 * 3600.0
    max_pixels: int = 8192 * 8192
    decode_side: int = 640


@dataclass(frozen=True)
class VideoInfo:
    path: str
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    rotation: int = 0                 # degrees counter-clockwise a player turns the stored picture (0, 90, 180, 270)
    variable_rate: bool = False       # frame intervals differ (known once decoded)

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown, after the rotation."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)

    @property
    def has_alpha(self) -> bool:
        return any(tag in self.pix_fmt for tag in ("yuva", "rgba", "argb", "bgra", "abgr", "gbrap", "ya"))


@dataclass
class Clip:
    """Sampled frames of one file: ``frames`` is uint8 T×H×W×3 RGB (at most ``decode_side`` px), ``indices``
    the frame numbers they came from, ``times_s`` their timestamps."""

    frames: np.ndarray
    indices: np.ndarray
    times_s: np.ndarray
    info: VideoInfo
    warnings: list[str] = field(default_factory=list)


def sample_indices(start: int, stop: int, count: int) -> np.ndarray:
    """One frame from the middle of each of ``count`` equal segments of [start, stop) (repeats if too short)."""
    n = max(stop - start, 1)
    return start + np.minimum(((np.arange(count) + 0.5) * n / count).astype(np.int64), n - 1)


def probe(path: str | Path, limits: DecodeLimits = DecodeLimits()) -> VideoInfo:
    """Read the container's metadata and refuse files that are not usable videos (the first frame is decoded for
    its display rotation, which FFmpeg attaches to decoded frames)."""
    path = Path(path)
    if not path.is_file():
        raise NotAVideoError(f"{path.name}: no such file.")
    size = path.stat().st_size
    if size == 0:
        raise EmptyVideoError(f"{path.name} is empty (0 bytes).")
    if size > limits.max_bytes:
        raise VideoTooLargeError(f"{path.name} is {size / 2**20:.0f} MiB; the limit is "
                                 f"{limits.max_bytes / 2**20:.0f} MiB.")
    _refuse_still_image(path)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            streams = container.streams.video
            if not container.streams:
                raise EmptyVideoError(f"{path.name} contains no frames (the container holds no streams).")
            if not streams:
                kinds = sorted({s.type for s in container.streams}) or ["nothing"]
                raise NotAVideoError(f"{path.name} has no video stream (it contains {', '.join(kinds)}).")
            s = streams[0]
            ctx = s.codec_context
            fps = float(s.average_rate or s.guessed_rate or 0) or 0.0
            duration = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
            if not duration and container.duration:
                duration = container.duration / av.time_base
            frames = int(s.frames or 0) or (int(round(duration * fps)) if duration and fps else 0)
            info = VideoInfo(str(path), frames, fps, duration, int(ctx.width or 0), int(ctx.height or 0),
                             ctx.name or "unknown", str(ctx.format.name) if ctx.format else "unknown")
            _check_size(info, limits)
            rotation = _rotation(container)
    except VideoError:
        raise
    except (av.error.InvalidDataError, av.error.EOFError):
        raise NotAVideoError(f"{path.name} cannot be read as a video: it is not a video, or it is damaged or "
                             f"incomplete.") from None
    except av.error.FFmpegError:
        raise CorruptVideoError(f"{path.name} could not be opened as a video: its header is damaged or describes "
                                f"a picture this reader cannot handle (such as an absurd size).") from None
    return replace(info, rotation=rotation)


def _check_size(info: VideoInfo, limits: DecodeLimits) -> None:
    """Refuse a picture size or duration beyond ``limits`` (before any frame is decoded)."""
    name = Path(info.path).name
    if info.width * info.height == 0:
        raise CorruptVideoError(f"{name}: the video stream has no picture size; the file is probably damaged.")
    if info.width * info.height > limits.max_pixels:
        raise VideoTooLargeError(f"{name} is {info.width}×{info.height}; at most {limits.max_pixels:,} pixels per "
                                 f"frame are accepted.")
    if info.duration_s > limits.max_duration_s:
        raise VideoTooLargeError(f"{name} lasts {info.duration_s / 60:.0f} min; the limit is "
                                 f"{limits.max_duration_s / 60:.0f} min.")


def _rotation(container: av.container.InputContainer) -> int:
    """The display rotation of the first frame (one frame decoded; 0 if it cannot be), rounded to 90°."""
    try:
        frame = next(container.decode(video=0), None)
    except av.error.FFmpegError:
        return 0
    return int(round((frame.rotation if frame is not None else 0) / 90)) * 90 % 360


def _counted(info: VideoInfo, times: np.ndarray) -> VideoInfo:
    """``info`` with the frame count and rate of the decoded index (frame times ``times``, in seconds)."""
    steps = np.diff(times)
    variable = len(steps) > 1 and float(steps.std()) > 0.1 * max(float(steps.mean()), 1e-9)
    fps = (len(times) - 1) / float(times[-1] - times[0]) if variable and times[-1] > times[0] else info.fps
    return replace(info, frames=len(times), fps=fps, variable_rate=variable)


def _refuse_still_image(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            animated = getattr(im, "n_frames", 1) > 1
            fmt = im.format
    except (UnidentifiedImageError, OSError, ValueError):
        return
    if not animated and fmt == "GIF":
        raise _single_frame(path.name)
    if not animated:
        raise StillImageError(f"{path.name} is a still {fmt} image, not a video; upload a clip "
                              f"(mp4, webm, mov, avi, gif).")


def _single_frame(name: str) -> StillImageError:
    """The same refusal for every one-frame file, whatever its format."""
    return StillImageError(f"{name} has a single frame: a still picture, not a video; upload a clip with motion.")


def decode_size(info: VideoInfo, limits: DecodeLimits) -> tuple[int, int]:
    """(width, height) of the decoded frames, as displayed (after rotation)."""
    width, height = info.display_size
    scale = min(1.0, limits.decode_side / max(width, height))
    return max(2, int(round(width * scale))), max(2, int(round(height * scale)))


def read_clip(path: str | Path, num_frames: int = 16, start_s: float | None = None, end_s: float | None = None,
              limits: DecodeLimits = DecodeLimits()) -> Clip:
    """Decode ``num_frames`` frames sampled one per equal segment of [start_s, end_s) of the file.

    Only the stretches that lead to the sampled frames are decoded; huge resolutions are shrunk while converting.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    info = probe(path, limits)
    warnings = []
    if info.has_alpha:
        warnings.append(f"The video has an alpha channel ({info.pix_fmt}); transparency is ignored.")
    width, height = decode_size(info, limits)
    clip = _read_frames(info, num_frames, start_s, end_s, width, height, warnings)
    unique = len(np.unique(clip.indices))
    if unique == 1 and start_s is None and end_s is None:
        raise _single_frame(Path(path).name)
    if unique < num_frames:
        clip.warnings.append(f"The selected segment has only {unique} frame(s); frames were repeated to make "
                             f"{num_frames}.")
    return clip


def _time_range(times: np.ndarray, start_s: float | None, end_s: float | None, name: str) -> tuple[int, int]:
    lo = 0 if start_s is None else int(np.searchsorted(times, start_s, side="left"))
    hi = len(times) if end_s is None else int(np.searchsorted(times, end_s, side="left"))
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise VideoError(f"The segment end ({end_s:g} s) must come after its start ({start_s:g} s).")
    if hi <= lo:
        last = times[-1] if len(times) else 0.0
        end = "the end" if end_s is None else f"{end_s:g} s"
        raise VideoError(f"{name}: no frame lies between {start_s or 0:g} s and {end}; the video runs 0–{last:.2f} s.")
    return lo, hi


@dataclass(frozen=True)
class _FrameIndex:
    """Every frame's presentation timestamp (sorted, in the stream's time base) and which frames are keyframes,
    read from the packets without decoding. ``seekable`` is False when packets carry no timestamps."""

    pts: np.ndarray
    keyframes: np.ndarray          # positions in ``pts`` of the frames a decoder can start from
    time_base: Fraction
    seekable: bool

    @property
    def times_s(self) -> np.ndarray:
        return ((self.pts - self.pts[0]) * float(self.time_base)).astype(np.float64)

    def position(self, pts: int | None, counted: int) -> int:
        """The frame number of a decoded frame (its timestamp's place, or the decode count without timestamps)."""
        if not self.seekable or pts is None:
            return counted
        return min(int(np.searchsorted(self.pts, pts)), len(self.pts) - 1)


def _frame_index(path: str, fps: float) -> _FrameIndex:
    """Read every packet's timestamp and keyframe flag (no decoding); a truncated file indexes what was read."""
    pts, keys = [], []
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            base = stream.time_base or Fraction(1, 1)
            for packet in container.demux(stream):
                if packet.size:
                    pts.append(packet.pts)
                    keys.append(packet.is_keyframe)
    except av.error.FFmpegError:
        pass
    if not pts:
        raise EmptyVideoError(f"{Path(path).name} contains no frames.")
    seekable = None not in pts and len(set(pts)) == len(pts)
    if not seekable:
        rate = Fraction(fps or 25).limit_denominator(1001)
        return _FrameIndex(np.arange(len(pts), dtype=np.int64), np.zeros(1, np.int64), 1 / rate, False)
    order = np.argsort(np.asarray(pts, np.int64), kind="stable")
    at = np.empty_like(order)
    at[order] = np.arange(len(order))
    keyframes = np.sort(at[np.asarray(keys, bool)]) if any(keys) else np.zeros(1, np.int64)
    return _FrameIndex(np.asarray(pts, np.int64)[order], keyframes, base, True)


def _decoded(container: av.container.InputContainer, stream: av.video.stream.VideoStream, index: _FrameIndex,
             damaged: set[int]):
    """(frame number, frame) of every frame decoded from the container's position on; the numbers of frames
    decoded with errors, or lost with their packet, go into ``damaged``."""
    counted = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            damaged.add(index.position(packet.pts, counted))
            continue
        for frame in frames:
            number = index.position(frame.pts, counted)
            counted += 1
            if frame.is_corrupt:
                damaged.add(number)
            yield number, frame


def _read_frames(info: VideoInfo, num_frames: int, start_s, end_s, width: int, height: int,
                 warnings: list[str]) -> Clip:
    """Decode the sampled frames: from the keyframe before each (a seek when one lies ahead) up to it, so a long
    clip costs only the stretches that lead to its sampled frames. Every frame decoded on the way is checked, so
    damage that reaches a sampled frame becomes a warning."""
    name = Path(info.path).name
    index = _frame_index(info.path, info.fps)
    times = index.times_s
    lo, hi = _time_range(times, start_s, end_s, name)
    wanted = sample_indices(lo, hi, num_frames)
    targets = sorted(set(wanted.tolist()))
    turns = info.rotation // 90
    stored = (height, width) if turns % 2 else (width, height)         # to_ndarray's size, before turning
    keep: dict[int, np.ndarray] = {}
    damaged: set[int] = set()
    try:
        with av.open(info.path) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            frames = _decoded(container, stream, index, damaged)
            position, start = -1, 0                    # the last frame decoded; the keyframe last sought
            seeking, sought = index.seekable, False
            pending = iter(targets)
            target = next(pending, None)
            while target is not None:
                before = int(np.searchsorted(index.keyframes, target, "right")) - 1
                key = int(index.keyframes[before]) if before >= 0 else 0
                if seeking and key > max(position + 1, start):
                    container.seek(int(index.pts[key]), stream=stream, backward=True)
                    frames, start, sought = _decoded(container, stream, index, damaged), key, True
                number, frame = next(frames, (None, None))
                if number is None:
                    break
                if sought and number > start:        # an inexact seek overshot: decode from the start instead
                    container.seek(int(index.pts[0]), stream=stream, backward=True)
                    frames, seeking, sought = _decoded(container, stream, index, damaged), False, False
                    continue
                position, sought = max(position, number), False
                while target is not None and target <= number:
                    if target < number:
                        damaged.add(target)                    # its frame never came: the next one stands in
                    keep[target] = np.rot90(frame.to_ndarray(format="rgb24", width=stored[0], height=stored[1]),
                                            turns, axes=(0, 1))
                    target = next(pending, None)
    except av.error.FFmpegError:
        pass
    if not keep:
        raise CorruptVideoError(f"{name} is damaged: no frame of the requested segment could be decoded.")
    if damaged:
        first = times[min(min(damaged), len(times) - 1)]
        warnings.append(f"{name} is damaged: {len(damaged)} frame(s) from {first:.2f} s on had decoding errors, "
                        f"so the frames the model sees there may show blocks or smears.")
    if len(keep) < len(targets):
        warnings.append(f"{name} is truncated or damaged: frames after {times[max(keep)]:.2f} s could not be "
                        f"decoded; the clip is sampled from the frames before.")
        available = np.array(sorted(keep))
        wanted = available[sample_indices(0, len(available), num_frames)]
    frames = np.stack([keep[i] for i in wanted.tolist()])
    return Clip(_rgb(frames), wanted, times[wanted], _counted(info, times), warnings)


def _rgb(frames: np.ndarray) -> np.ndarray:
    """Any decoded array → uint8 T×H×W×3 (grayscale is replicated, alpha dropped)."""
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames[..., :3], dtype=np.uint8)


def resized_size(source_hw: tuple[int, int], spec: InputSpec) -> tuple[int, int]:
    """The (height, width) that frames of ``source_hw`` are resized to before the centre crop to ``spec.size``."""
    h, w = spec.size
    if spec.resize is None:
        return h, w
    size = tuple(spec.resize)
    if len(size) == 1:  # short side, aspect ratio kept
        scale = size[0] / min(source_hw)
        size = (max(h, round(source_hw[0] * scale)), max(w, round(source_hw[1] * scale)))
    return size


def seen_size(source_hw: tuple[int, int], spec: InputSpec) -> tuple[int, int]:
    """The (height, width) of the centre of a ``source_hw`` frame that the model sees (``fit_frames``)."""
    rh, rw = resized_size(source_hw, spec)
    return round(source_hw[0] * spec.size[0] / rh), round(source_hw[1] * spec.size[1] / rw)


def fit_frames(frames: np.ndarray | torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Resize (and centre-crop) uint8 T×H×W×3 frames to the model geometry: float T×3×h×w in [0, 1]."""
    x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float().div_(255)
    h, w = spec.size
    size = resized_size((x.shape[2], x.shape[3]), spec)
    if size != tuple(x.shape[2:]):               # (at its own size the resize is the identity)
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, top:top + h, left:left + w]


def map_boxes(boxes: np.ndarray, source_hw: tuple[int, int], spec: InputSpec) -> np.ndarray:
    """Boxes (x0, y0, x1, y1) on frames of ``source_hw`` → the same boxes on the model's frames (``fit_frames``'s
    resize and centre crop), clipped to the frame."""
    sh, sw = source_hw
    h, w = spec.size
    size = resized_size(source_hw, spec)
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    b = np.asarray(boxes, np.float64) * [size[1] / sw, size[0] / sh, size[1] / sw, size[0] / sh]
    b -= [left, top, left, top]
    return np.clip(b, 0, [w, h, w, h])


def standardise(x01: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """float T×3×h×w in [0, 1] → standardised model input 1×3×T×h×w (minus ``spec.mean``, over ``spec.std``)."""
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return ((x01 - mean) / std).permute(1, 0, 2, 3).unsqueeze(0).contiguous()


def destandardise(x: torch.Tensor, spec: InputSpec) -> np.ndarray:
    """Model input 1×3×T×h×w (standardised) → uint8 T×h×w×3 frames, the inverse of ``standardise`` (for display)."""
    mean = torch.tensor(spec.mean, device=x.device).view(3, 1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(3, 1, 1, 1)
    return (x[0].float() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def preprocess(frames: np.ndarray, spec: InputSpec) -> tuple[torch.Tensor, np.ndarray]:
    """Model input (1×3×T×h×w, standardised) and the same frames as uint8 (uint8 T×h×w×3) for rendering."""
    if len(frames) != spec.frames:
        frames = frames[sample_indices(0, len(frames), spec.frames)]
    x01 = fit_frames(frames, spec)
    display = (x01 * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return standardise(x01, spec), display


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 8.0, crf: int = 20, preset: str = "veryfast") -> Path:
    """Encode uint8 T×H×W×3 RGB frames as browser-playable H.264 (yuv420p, +faststart); odd sizes are padded.
    ``preset``: x264's speed for size trade-off (``ultrafast``: 2.5× faster than ``veryfast``, files 1.7× larger,
    no B-frames)."""
    path = Path(path)
    frames = np.asarray(frames, np.uint8)
    _, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w + pad_w, h + pad_h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path


@dataclass
class PreparedClip:
    """A file made ready for one model: ``x`` is the standardised input 1×3×T×h×w, ``display`` the same frames
    as uint8 (T×h×w×3, what the model sees, for overlays), ``clip`` the decoded source."""

    x: torch.Tensor
    display: np.ndarray
    clip: Clip


def prepare_clip(path: str | Path, spec: InputSpec, start_s: float | None = None, end_s: float | None = None,
                 limits: DecodeLimits = DecodeLimits()) -> PreparedClip:
    """Decode ``spec.frames`` frames of [start_s, end_s) and preprocess them for a model with this input spec."""
    clip = read_clip(path, spec.frames, start_s, end_s, limits)
    x, display = preprocess(clip.frames, spec)
    return PreparedClip(x, display, clip)
