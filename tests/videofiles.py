"""Makers of small video files, good and bad, for the decoding tests (every file is written by the test)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from zoo.video import write_mp4


def frames(t: int = 24, h: int = 64, w: int = 80) -> np.ndarray:
    """A moving gradient: frame i is distinguishable from frame j by its mean brightness."""
    base = np.linspace(0, 200, w, dtype=np.float32)[None, None, :, None]
    out = np.broadcast_to(base, (t, h, w, 3)).copy()
    out += (np.arange(t) * (50 / max(t, 1)))[:, None, None, None]
    return out.clip(0, 255).astype(np.uint8)


def encode(path: Path, video: np.ndarray, codec: str = "libx264", pix_fmt: str = "yuv420p", fps: float = 8,
           fmt: str | None = None, pts: list[int] | None = None, in_format: str = "rgb24", options=None) -> Path:
    """Encode frames with any PyAV codec/pixel format, ``pts`` (in 1/1000 s) makes variable frame rate."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = video.shape[2], video.shape[1], pix_fmt
        if options:
            s.options = options
        if pts is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        for i, f in enumerate(video):
            frame = av.VideoFrame.from_ndarray(f, format=in_format)
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return path


def mp4(path: Path, t: int = 24, h: int = 64, w: int = 80, fps: float = 8) -> Path:
    return write_mp4(path, frames(t, h, w), fps=fps)


def zero_frames(path: Path) -> Path:
    """An MP4 container whose writer received no frame (FFmpeg then writes a header without any track)."""
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=16000)
        tone = (np.sin(np.arange(16000) / 10) * 3000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate = 16000
        c.mux(s.encode(frame))
        c.mux(s.encode())
    return path


def truncated(path: Path, keep: float = 0.5, faststart: bool = True) -> Path:
    """An MP4 cut after ``keep`` of its bytes (index first with faststart, so the header survives)."""
    full = path.with_name("full_" + path.name)
    noisy = np.random.default_rng(0).integers(0, 256, (48, 96, 128, 3), dtype=np.uint8)  # incompressible: many bytes
    if faststart:
        write_mp4(full, noisy)
    else:
        encode(full, noisy, fmt="mp4")
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def rotated(path: Path, degrees: int, t: int = 12, h: int = 32, w: int = 64) -> Path:
    """A wide clip with a white square in its stored top-left corner and display-rotation metadata (as phones
    write), ``degrees`` counter-clockwise."""
    video = np.zeros((t, h, w, 3), np.uint8)
    video[:, :8, :8] = 255
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.set_display_rotation(degrees)
        for f in video:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def declared_size(path: Path, width: int, height: int) -> Path:
    """A y4m file whose header declares a picture of ``width``×``height`` (followed by a little data)."""
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + b"\x80" * 100_000)
    return path


def damaged_middle(path: Path, t: int = 48, zeroed: int = 64) -> Path:
    """An MP4 of noise (8 fps, a keyframe every 8 frames or so) whose frame 24 (t = 3.0 s) has its last ``zeroed``
    bytes of data zeroed (all of them if fewer): the decoder meets the end of the picture's data too early."""
    video = np.random.default_rng(0).integers(0, 255, (t, 64, 80, 3), dtype=np.uint8)
    encode(path, video, options={"g": "8"})
    with av.open(str(path)) as c:
        packets = sorted((p.pts, p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size)
    _, pos, size = packets[t // 2]
    data = bytearray(path.read_bytes())
    start = pos + max(size - zeroed, 0)
    data[start:pos + size] = bytes(pos + size - start)
    path.write_bytes(bytes(data))
    return path
