"""Sliding-window recognition over a stream of frames of any length, in one pass and bounded memory.

Windows of `window` frames start every `stride` frames. Each window is classified exactly as
`slr.predict` classifies the same cut: `uniform_indices(window length, num_frames)` of its frames,
cropped as at evaluation. The backbone runs at most once per frame (only on frames some window
samples); the features wait in a ring buffer, and only the LSTM + head run per window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from slr.data.sampling import uniform_indices
from slr.data.transforms import Box, square_box
from slr.data.video import DecodeError, Upright, crop_resize, open_video


def window_bounds(num_frames: int, window: int, stride: int) -> list[tuple[int, int]]:
    """The [start, end) frame ranges `StreamingRecognizer` classifies in a video of `num_frames`.

    Full windows at 0, stride, 2 * stride, ...; a video shorter than `window` is one window of
    all its frames; frames after the last full window that the next one would have covered get
    one more full window ending at the last frame. With stride > window, frames between windows
    are left out, as asked.
    """
    check_window(window, stride)
    if num_frames <= 0:
        return []
    if num_frames < window:
        return [(0, num_frames)]
    bounds = [(s, s + window) for s in range(0, num_frames - window + 1, stride)]
    last_start = bounds[-1][0]
    if bounds[-1][1] < num_frames and last_start + stride < num_frames:
        bounds.append((num_frames - window, num_frames))
    return bounds


def check_window(window: int, stride: int) -> None:
    if window < 1 or stride < 1:
        raise ValueError(f"window={window}, stride={stride}: both are frame counts, 1 or more")


class StreamingRecognizer:
    """Frames in, one result per finished window out. Feed frames with `push`, then call `finish`.

    Memory holds at most the last `window` decoded frames and their features, whatever the
    stream's length. Frames are cropped only when a window samples them: at 720p cropping costs
    about as much as the backbone, and with the default window half the frames are never seen.

    Args:
        net: a SignClassifier (anything with `encoder(frames, lengths)` and
            `classify(features, lengths)`), in eval mode.
        glosses: the class names, in label order.
        num_frames: frames the model sees per window (the checkpoint's).
        image_size: crop side in pixels (the checkpoint's).
        window, stride: in frames of the stream.
        fps: the stream's frame rate, for the windows' times.
        bbox: [x1, y1, x2, y2] around the signer in source pixels; None = the centre square.
        bbox_margin: see `square_box`.
        topk: glosses per window.
        device: where the network lives.
        first_frame: the index of the first frame pushed in its video (for a cut's timeline).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        glosses: list[str],
        num_frames: int,
        image_size: int,
        window: int,
        stride: int,
        fps: float,
        bbox: Box | None = None,
        bbox_margin: float = 0.15,
        topk: int = 5,
        device: str | torch.device = "cpu",
        first_frame: int = 0,
    ) -> None:
        check_window(window, stride)
        if fps <= 0:
            raise ValueError(f"fps={fps}: the stream's frame rate must be positive")
        self.net, self.glosses = net, glosses
        self.num_frames, self.image_size = num_frames, image_size
        self.window, self.stride, self.fps = window, stride, fps
        self.bbox, self.bbox_margin = bbox, bbox_margin
        self.topk = min(topk, len(glosses))
        self.device = torch.device(device)
        self.first_frame = first_frame
        self.count = 0  # frames pushed so far
        # the last `window` frames: (index, frame, its crop box)
        self.frames: deque[tuple[int, av.VideoFrame, Box]] = deque(maxlen=window)
        self.features: dict[int, torch.Tensor] = {}  # frame index -> (1280,), the ring buffer
        self.last: tuple[int, int] | None = None  # the last window classified
        self.box: Box | None = None
        self.frame_size: tuple[int, int] | None = None
        self.encoded = 0  # frames the backbone has seen: at most one call per frame
        self.timing = {"crop": 0.0, "backbone": 0.0, "lstm_head": 0.0}

    def push(self, frame: av.VideoFrame | np.ndarray) -> list[dict]:
        """Add the next frame (a decoded frame, or an (H, W, 3) uint8 RGB array); returns the
        window it completes, if any, as a one-element list."""
        if isinstance(frame, np.ndarray):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frame {frame.shape} {frame.dtype}: give (H, W, 3) uint8 RGB")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self.frame_size != (frame.width, frame.height):  # a webcam may change resolution
            self.frame_size = (frame.width, frame.height)
            self.box = square_box(self.bbox, frame.width, frame.height, self.bbox_margin)
        self.frames.append((self.count, frame, self.box))
        self.count += 1
        # no window from now on starts before count - window: older features are never read again
        for i in [i for i in self.features if i < self.count - self.window]:
            del self.features[i]
        n, w = self.count, self.window
        if n >= w and (n - w) % self.stride == 0:
            return [self._classify(n - w, n)]
        return []

    def finish(self) -> list[dict]:
        """The windows only the stream's end decides: all of a short stream, or the tail."""
        n, w = self.count, self.window
        if n == 0:
            return []
        if n < w:
            return [self._classify(0, n)]
        start, end = self.last
        if end < n and start + self.stride < n:
            return [self._classify(n - w, n)]
        return []

    @torch.inference_mode()
    def _classify(self, start: int, end: int) -> dict:
        picks = [start + i for i in uniform_indices(end - start, self.num_frames)]
        todo = [p for p in picks if p not in self.features]
        if todo:
            t0 = time.perf_counter()
            held = {i: (frame, box) for i, frame, box in self.frames}  # every pick among them
            crops = np.empty((len(todo), self.image_size, self.image_size, 3), dtype=np.uint8)
            for k, p in enumerate(todo):
                crop_resize([held[p][0]], held[p][1], self.image_size, out=crops[k : k + 1])
            self.timing["crop"] += time.perf_counter() - t0
            # (K, S, S, 3) -> (1, K, 3, S, S)
            clip = torch.from_numpy(crops).permute(0, 3, 1, 2)[None].to(self.device)
            t0 = self._sync()
            feats = self.net.encoder(clip, torch.tensor([len(todo)]))[0]  # (K, 1280)
            self.timing["backbone"] += self._sync() - t0
            self.encoded += len(todo)
            self.features.update(zip(todo, feats, strict=True))
        t0 = self._sync()
        feats = torch.stack([self.features[p] for p in picks])[None]  # (1, T, 1280)
        logits = self.net.classify(feats, torch.tensor([len(picks)]))[0]  # (C,)
        probs = logits.softmax(dim=-1).cpu()
        self.timing["lstm_head"] += self._sync() - t0
        self.last = (start, end)
        top = probs.topk(self.topk)
        first, last = start + self.first_frame, end + self.first_frame
        return {
            "start_frame": first,
            "end_frame": last,
            "start_s": round(first / self.fps, 4),
            "end_s": round(last / self.fps, 4),
            "frames": len(picks),
            "glosses": [self.glosses[i] for i in top.indices.tolist()],
            "probabilities": [round(p, 6) for p in top.values.tolist()],
            "logits": logits.cpu(),
        }

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()


def video_frames(
    path: str | Path, start_sec: float = 0.0, stop_sec: float | None = None
) -> tuple[float, Iterator[av.VideoFrame]]:
    """The frame rate of `path`'s first video stream and an iterator decoding its frames
    start <= i < stop one by one (i counted from the top; times mapped at the stream's rate, as
    `read_frames` maps them). Nothing is kept: memory does not grow with the video's length.
    Raises DecodeError or one of DECODE_ERRORS for a file that cannot be read."""
    container = open_video(path)
    try:
        if not container.streams.video:
            raise DecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
    except BaseException:
        container.close()
        raise
    start = max(0, round(start_sec * fps))
    stop = None if stop_sec is None else max(start + 1, round(stop_sec * fps))

    def frames() -> Iterator[av.VideoFrame]:
        turn = Upright(path)  # phone videos: the display matrix, as read_frames applies it
        with container:
            for i, frame in enumerate(container.decode(stream)):
                if stop is not None and i >= stop:
                    break
                if i >= start:
                    yield turn(frame)

    return fps, frames()
