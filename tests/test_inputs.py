"""Messy real-world video files: cut short, nonsense boxes, rotated phone clips. Each is
reported, and handled as its setting says, never used silently as if it were whole."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from slr.data.dataset import ClipDataset, load_views
from slr.data.transforms import ClipTransform, checked_box
from slr.data.video import DecodeError, read_frames
from slr.data.wlasl import Instance
from slr.inference.predictor import Predictor
from tests.helpers import save_random_checkpoint


def write_noisy(path: Path, frames: int = 50, size=(160, 120), faststart: bool = True) -> Path:
    """Random frames (large packets, so a cut lands mid-stream); `faststart` puts the index at
    the front, as web-served mp4s have it."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory) -> Path:
    """A 50-frame clip with its last 65% of bytes missing (a download that stopped)."""
    folder = tmp_path_factory.mktemp("cut")
    whole = write_noisy(folder / "whole.mp4").read_bytes()
    cut = folder / "cut.mp4"
    cut.write_bytes(whole[: int(len(whole) * 0.35)])
    return cut


def test_whole_file_is_not_called_truncated(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        frames, _ = read_frames(write_noisy(tmp_path / "whole.mp4"))
    assert len(frames) == 50
    assert "truncated" not in caplog.text


def test_truncated_file_is_skipped_by_default(cut_video):
    with pytest.raises(DecodeError, match=r"cut.mp4: truncated, decoding stopped after \d+ of"):
        read_frames(cut_video)


def test_truncated_file_is_used_with_a_warning_when_asked(cut_video, caplog):
    with caplog.at_level(logging.WARNING):
        frames, _ = read_frames(cut_video, truncated="use")
    assert 0 < len(frames) < 40
    assert f"{cut_video}: truncated" in caplog.text
    assert f"the {len(frames)} frames that decoded" in caplog.text


def test_truncated_clip_fails_in_the_dataset(cut_video):
    inst = Instance("cut", 0, "g", "train")
    clips = ClipDataset([inst], cut_video.parent, 8, ClipTransform(image_size=32))
    item = clips[0]
    assert "truncated" in item["error"]
    used = ClipDataset([inst], cut_video.parent, 8, ClipTransform(image_size=32), truncated="use")
    assert "frames" in used[0]


@pytest.mark.slow
def test_predict_warns_on_a_truncated_file(cut_video, tmp_path, caplog):
    ckpt = save_random_checkpoint(tmp_path / "r.ckpt", ["a", "b"])
    with caplog.at_level(logging.WARNING):
        result = Predictor(ckpt, device="cpu")(cut_video)
    assert result["glosses"]
    assert "truncated" in caplog.text
    with pytest.raises(DecodeError, match="truncated"):
        Predictor(ckpt, device="cpu", truncated="skip")(cut_video)


@pytest.mark.parametrize(
    ("bbox", "expected", "says"),
    [
        ((10, 10, 50, 40), (10, 10, 50, 40), None),  # inside: as given
        ((10, 10, 65, 49), (10, 10, 64, 48), None),  # a pixel over: clamped quietly
        ((20, 10, 200, 400), (20, 10, 64, 48), "reaches outside the 64x48 frame; clamped"),
        ((300, 200, 600, 400), None, "lies outside the 64x48 frame"),  # another resolution's
        ((10, 10, 10, 40), None, "is empty or inverted"),
        ((50, 40, 10, 10), None, "is empty or inverted"),
        ((62, 10, 90, 40), None, "lies outside"),  # 2 pixels left inside: a sliver
    ],
)
def test_checked_box(bbox, expected, says, caplog):
    with caplog.at_level(logging.WARNING):
        assert checked_box(bbox, 64, 48, f"clip{bbox}.mp4") == expected
    if says is None:
        assert not caplog.records
    else:
        assert f"clip{bbox}.mp4: bbox {list(bbox)} {says}" in caplog.text


def test_a_box_outside_the_frame_crops_like_no_box(tmp_path, caplog):
    write_noisy(tmp_path / "v.mp4", frames=8, size=(64, 48))
    outside = Instance("v", 0, "g", "test", bbox=(640, 360, 1280, 720))
    plain = Instance("v", 0, "g", "test")
    make = ClipDataset([outside, plain], tmp_path, 4, ClipTransform(image_size=32))
    with caplog.at_level(logging.WARNING):
        got, want = make[0]["frames"], make[1]["frames"]
    assert torch.equal(got, want)
    assert f"{tmp_path / 'v.mp4'}: bbox [640, 360, 1280, 720] lies outside" in caplog.text
    make[0]
    assert caplog.text.count("lies outside") == 1  # once per video, not per epoch


def write_rotated(path: Path, degrees: float, frames: int = 6) -> Path:
    """A 64x48 clip stored with a white block at its top left and a display matrix turning it
    `degrees` counter-clockwise (a phone held upright records -90)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(degrees)
        for _ in range(frames):
            image = np.zeros((48, 64, 3), np.uint8)
            image[:12, :16] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize(
    ("degrees", "shape", "corner"),
    [
        (0, (48, 64), (0, 0)),
        (-90, (64, 48), (0, -1)),
        (90, (64, 48), (-1, 0)),
        (180, (48, 64), (-1, -1)),
    ],
)
def test_rotated_video_is_decoded_upright(tmp_path, degrees, shape, corner):
    frames, _ = read_frames(write_rotated(tmp_path / "r.mp4", degrees))
    image = frames[0].to_ndarray(format="rgb24")[..., 0]
    assert image.shape == shape
    assert image[corner] > 200  # the block is where a player shows it (turned clockwise for -90)
    assert image.mean() < 80


def test_rotated_video_is_upright_in_training_and_predict(tmp_path):
    write_rotated(tmp_path / "r.mp4", -90)
    write_rotated(tmp_path / "u.mp4", 0)
    clips = ClipDataset(
        [Instance("r", 0, "g", "test"), Instance("u", 0, "g", "test")],
        tmp_path,
        4,
        ClipTransform(image_size=32),
    )
    rotated, upright = clips[0]["frames"][0, 0], clips[1]["frames"][0, 0]  # (S, S) red channel
    # the centre square of a portrait 48x64 frame vs a landscape one: different pictures, and
    # the rotated one's is what np.rot90 of the stored frame shows
    assert not torch.equal(rotated, upright)
    stored = np.zeros((48, 64), np.uint8)
    stored[:12, :16] = 255
    shown = np.rot90(stored, k=-1)  # (64, 48): clockwise
    top = (64 - 48) // 2
    expected = torch.from_numpy(shown[top : top + 48].copy()).float()
    got = torch.nn.functional.interpolate(rotated[None, None].float(), size=(48, 48))[0, 0]
    assert (got > 128).eq(expected > 128).float().mean() > 0.95
    views, _ = load_views(tmp_path / "r.mp4", 4, 32, 0.15)
    assert torch.equal(views[0, :, 0], clips[0]["frames"][:, 0])


def test_prepare_keeps_the_display_rotation(tmp_path):
    from slr.acquisition.trim import Cut, cut_video, pick_encoder

    source = write_rotated(tmp_path / "phone.mp4", -90, frames=10)
    cut = Cut(Instance("c", 0, "g", "train", frame_start=3, frame_end=8), tmp_path / "c.mp4")
    cut_video(source, [cut], pick_encoder())
    assert not cut.error and cut.written == 6
    frames, _ = read_frames(cut.path)
    assert (frames[0].width, frames[0].height) == (48, 64)


def test_rotated_video_is_upright_when_streamed(tmp_path):
    from slr.inference.streaming import video_frames

    path = write_rotated(tmp_path / "r.mp4", -90)
    _, frames = video_frames(path, 0.0, None)
    streamed = [f.to_ndarray(format="rgb24") for f in frames]
    decoded = [f.to_ndarray(format="rgb24") for f in read_frames(path)[0]]
    assert len(streamed) == len(decoded) == 6
    assert streamed[0].shape == (64, 48, 3)  # portrait, as read_frames and a player show it
    assert all(np.array_equal(a, b) for a, b in zip(streamed, decoded, strict=True))
