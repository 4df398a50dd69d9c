"""Video decoding with PyAV. Frame counts come from decoding, never from container metadata, which
for some WLASL clips claims 1-3 frames more than decode."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

# What a broken, truncated or non-video file raises while opening or decoding.
DECODE_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError, IndexError)


class DecodeError(RuntimeError):
    """A file that opened but holds no decodable frames in the requested range."""


def read_frames(
    path: str | Path, start_sec: float = 0.0, stop_sec: float | None = None
) -> tuple[list[av.VideoFrame], float]:
    """Decode the frames of `path` whose index i satisfies start <= i < stop, where start and stop
    are the times mapped to the stream's own frame rate; stop None = to the end.

    Returns the frames (still in the decoder's pixel format: converting is left to the caller, who
    converts only the frames it samples) and the stream's frame rate.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads; frames still come out in order
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        start = max(0, round(start_sec * fps))
        stop = None if stop_sec is None else max(start + 1, round(stop_sec * fps))
        frames = []
        for i, frame in enumerate(container.decode(stream)):
            if stop is not None and i >= stop:
                break
            if i >= start:
                frames.append(frame)
    if not frames:
        raise DecodeError(f"{path}: no frames decoded in [{start}, {stop}) at {fps:.2f} fps")
    return frames, fps


def crop_resize(
    frames: list[av.VideoFrame], box: tuple[int, int, int, int], size: int
) -> np.ndarray:
    """Cut the square `box` = (x1, y1, x2, y2) out of each frame at `size` x `size` RGB:
    (T, size, size, 3) uint8.

    Converting and resizing happen in one swscale call per frame (area filter: antialiased when
    shrinking), which is several times faster than converting at full size and resizing in torch.
    """
    x1, y1, x2, _ = box
    scale = size / (x2 - x1)
    width, height = frames[0].width, frames[0].height
    # scale the whole frame so the box becomes size x size, then slice the box out of it
    sw, sh = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = min(round(x1 * scale), sw - size), min(round(y1 * scale), sh - size)
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for t, frame in enumerate(frames):
        rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA")
        out[t] = rgb.to_ndarray()[top : top + size, left : left + size]
    return out
