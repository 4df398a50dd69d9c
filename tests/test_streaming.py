"""Sliding-window recognition: window boundaries, one backbone pass per frame, bounded memory, and
windows that equal slr.predict on the same cut."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from slr.data.dataset import load_views
from slr.data.sampling import uniform_indices
from slr.inference.predictor import Predictor, frame_range
from slr.inference.streaming import StreamingRecognizer, video_frames, window_bounds
from slr.models.checkpoint import load_checkpoint
from tests.helpers import save_random_checkpoint

GLOSSES = [f"gloss{i}" for i in range(8)]
ROOT = Path(__file__).resolve().parents[1]
CLIP = "00624"  # 109 frames, 320x240, 29.97 fps


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.ckpt", GLOSSES)


@pytest.fixture(scope="module")
def net(ckpt):
    return load_checkpoint(ckpt).net.eval()


class CountingEncoder(torch.nn.Module):
    """The real encoder, recording how many frames each call encodes."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder, self.calls = encoder, []

    def forward(self, frames, lengths=None):
        self.calls.append(int(lengths.sum()) if lengths is not None else frames.shape[1])
        return self.encoder(frames, lengths)


class Counted(torch.nn.Module):
    def __init__(self, net) -> None:
        super().__init__()
        self.encoder, self.net = CountingEncoder(net.encoder), net

    def classify(self, features, lengths):
        return self.net.classify(features, lengths)


@pytest.mark.parametrize(
    ("n", "window", "stride", "expected"),
    [
        (0, 10, 5, []),
        (5, 10, 5, [(0, 5)]),  # shorter than a window: one window of all of it
        (10, 10, 5, [(0, 10)]),
        (20, 10, 5, [(0, 10), (5, 15), (10, 20)]),
        (22, 10, 5, [(0, 10), (5, 15), (10, 20), (12, 22)]),  # the tail ends at the last frame
        (24, 10, 10, [(0, 10), (10, 20), (14, 24)]),
        (45, 10, 30, [(0, 10), (30, 40)]),  # stride > window: the gap after 40 stays a gap
        (65, 10, 30, [(0, 10), (30, 40), (55, 65)]),  # the window at 60 was cut short
        (7, 1, 3, [(0, 1), (3, 4), (6, 7)]),
    ],
)
def test_window_bounds(n, window, stride, expected):
    assert window_bounds(n, window, stride) == expected


@pytest.mark.parametrize(("window", "stride"), [(0, 1), (4, 0), (-1, -1)])
def test_window_and_stride_are_checked(window, stride):
    with pytest.raises(ValueError, match="window"):
        window_bounds(10, window, stride)


def frames_of(n: int, seed: int = 0) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [g.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize(
    ("n", "window", "stride"),
    [(3, 9, 4), (9, 9, 4), (40, 9, 4), (41, 7, 2), (50, 6, 11), (37, 12, 12), (30, 1, 1)],
)
def test_backbone_runs_once_per_needed_frame(net, n, window, stride):
    counted = Counted(net)
    rec = StreamingRecognizer(counted, GLOSSES, 4, 32, window, stride, fps=25.0)
    results = []
    for frame in frames_of(n):
        results += rec.push(frame)
        # bounded: never more than one window of frames and features held
        assert len(rec.frames) <= window and len(rec.features) <= window
    results += rec.finish()
    bounds = window_bounds(n, window, stride)
    assert [(r["start_frame"], r["end_frame"]) for r in results] == bounds
    needed = {a + i for a, b in bounds for i in uniform_indices(b - a, 4)}
    # every needed frame is encoded at least once, so equal totals mean exactly once each
    assert sum(counted.encoder.calls) == len(needed) == rec.encoded
    assert len(counted.encoder.calls) <= len(bounds)  # one backbone call per window at most
    assert all(r["start_s"] == pytest.approx(r["start_frame"] / 25, abs=1e-4) for r in results)


@pytest.mark.slow
def test_memory_stays_bounded_over_a_long_stream(net):
    rec = StreamingRecognizer(net, GLOSSES, 4, 32, window=7, stride=2, fps=30.0)
    frame = frames_of(1)[0]
    windows = 0
    for _ in range(600):
        windows += len(rec.push(frame))
    assert len(rec.frames) == 7 and len(rec.features) <= 7
    windows += len(rec.finish())  # 600 - 7 is odd: one tail window ends at the last frame
    assert windows == len(window_bounds(600, 7, 2))


def test_bad_frames_and_rates_are_refused(net):
    with pytest.raises(ValueError, match="fps"):
        StreamingRecognizer(net, GLOSSES, 4, 32, 8, 4, fps=0)
    rec = StreamingRecognizer(net, GLOSSES, 4, 32, 8, 4, fps=25)
    with pytest.raises(ValueError, match="uint8"):
        rec.push(np.zeros((24, 40), dtype=np.uint8))


def test_windows_equal_predict_on_the_same_cut(ckpt, net, shared_wlasl):
    path = shared_wlasl / "clips" / f"{CLIP}.mp4"
    fps, frames = video_frames(path)
    rec = StreamingRecognizer(net, GLOSSES, 4, 32, window=20, stride=15, fps=fps)
    results = []
    for frame in frames:
        results += rec.push(frame)
    results += rec.finish()
    assert [(r["start_frame"], r["end_frame"]) for r in results] == window_bounds(109, 20, 15)
    predictor = Predictor(ckpt, "cpu")
    for r in results:
        # the cut as slr.predict takes it: 1-based inclusive frames at the video's rate
        start_sec, stop_sec = frame_range(r["start_frame"] + 1, r["end_frame"], fps)
        clips, lengths = load_views(path, 4, 32, 0.15, 1, None, start_sec, stop_sec)
        with torch.inference_mode():
            logits = net(clips, lengths)[0]
        torch.testing.assert_close(r["logits"], logits, atol=1e-4, rtol=1e-4)
        expected = predictor(path, start_sec, stop_sec)
        assert r["glosses"] == expected["glosses"]
        assert r["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)


@pytest.mark.slow
def test_cli_stream_writes_the_timeline(ckpt, shared_wlasl, tmp_path):
    out, video = tmp_path / "out" / "timeline.jsonl", tmp_path / "annotated.mp4"
    clip = shared_wlasl / "clips" / f"{CLIP}.mp4"
    cmd = [sys.executable, "-m", "slr.predict", f"ckpt_path={ckpt}", f"input={clip}"]
    cmd += ["stream=true", "window=30", "stride=10", f"output={out}", f"annotated={video}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "real-time factor" in proc.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(w["start_frame"], w["end_frame"]) for w in lines] == window_bounds(109, 30, 10)
    assert set(lines[0]) == {
        "start_frame", "end_frame", "start_s", "end_s", "frames", "glosses", "probabilities"
    }  # fmt: skip
    assert all(len(w["glosses"]) == 5 and set(w["glosses"]) <= set(GLOSSES) for w in lines)
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == len(lines)
    assert [r["gloss1"] for r in rows] == [w["glosses"][0] for w in lines]
    assert float(rows[-1]["end_s"]) == pytest.approx(lines[-1]["end_s"])
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 109


@pytest.mark.slow
def test_cli_stream_cut_and_bad_input(ckpt, shared_wlasl, tmp_path):
    clip = shared_wlasl / "clips" / f"{CLIP}.mp4"
    out = tmp_path / "cut.jsonl"
    base = [sys.executable, "-m", "slr.predict", f"ckpt_path={ckpt}", "stream=true"]
    # frames 31..90 at the clip's own rate: windows count in the video's frames
    cut = ["frame_start=31", "frame_end=90", "frame_rate=29.97", "window=20", "stride=20"]
    proc = subprocess.run(
        [*base, f"input={clip}", f"output={out}", *cut],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(w["start_frame"], w["end_frame"]) for w in lines] == [(30, 50), (50, 70), (70, 90)]
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    proc = subprocess.run(
        [*base, f"input={text}"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 1 and "cannot decode" in proc.stderr
    proc = subprocess.run(
        [*base, f"input={tmp_path}", "stride=0"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 1 and "stream=true takes one video file" in proc.stderr
    proc = subprocess.run(
        [*base, f"input={clip}", "window=0"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 1 and "window=0, stride=16" in proc.stderr
