"""Video decoding with PyAV. Frame counts come from decoding, never from container metadata, which
for some WLASL clips claims 1-3 frames more than decode."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

# What a broken, truncated or non-video file raises while opening or decoding.
DECODE_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError, IndexError)


class DecodeError(RuntimeError):
    """A file that opened but holds no decodable frames in the requested range."""


TRUNCATED = ("skip", "use")  # what to do with a file whose frames stop early (data.truncated)


def cut_short(decoded: int, listed: int) -> bool:
    """Some WLASL clips list 1-3 frames more than decode; far fewer means a truncated file."""
    return bool(listed) and decoded < 0.9 * listed - 3


def open_video(path: str | Path) -> av.container.InputContainer:
    """Open a video for reading. Metadata that is not valid UTF-8 (some real WLASL clips carry
    such tags) is decoded with replacement characters: by default PyAV raises UnicodeDecodeError
    while opening those files, although their frames decode normally."""
    return av.open(str(path), metadata_errors="replace")


def read_frames(
    path: str | Path,
    start_sec: float = 0.0,
    stop_sec: float | None = None,
    truncated: str = "skip",
) -> tuple[list[av.VideoFrame], float]:
    """Decode the frames of `path` whose index i satisfies start <= i < stop, where start and stop
    are the times mapped to the stream's own frame rate; stop None = to the end.

    Returns the frames (still in the decoder's pixel format: converting is left to the caller, who
    converts only the frames it samples) and the stream's frame rate. A range that starts later
    than 0 seeks to a keyframe a second or more before it and numbers frames by timestamp;
    decoding stops after the range's last frame.

    A file whose frames run out well before the number its container lists (cut short: with
    decoder threads, FFmpeg ends such a file quietly instead of raising) raises DecodeError when
    `truncated` is "skip", and is used as far as it decodes, with a warning, when "use".
    """
    if truncated not in TRUNCATED:
        raise ValueError(f"truncated={truncated!r}: use one of {TRUNCATED}")
    frames, fps, first, short = _decode_range(path, start_sec, stop_sec, seek=start_sec > 0)
    if first is not None and first > round(start_sec * fps):
        # the seek landed past the range's first frame (open-GOP B-frames, odd containers):
        # decode from the top instead, numbering frames by count
        frames, fps, _, short = _decode_range(path, start_sec, stop_sec, seek=False)
    if not frames:
        raise DecodeError(f"{path}: no frames decoded in [{start_sec}, {stop_sec}) s")
    frames = upright(frames, path)
    if short:
        message = f"{path}: truncated, decoding stopped after {short}"
        if truncated == "skip":
            raise DecodeError(f"{message} (data.truncated=skip; =use takes what decodes)")
        log.warning("%s; using the %d frames that decoded (truncated=use)", message, len(frames))
    return frames, fps


def _decode_range(
    path: str | Path, start_sec: float, stop_sec: float | None, seek: bool
) -> tuple[list[av.VideoFrame], float, int | None, str]:
    """The frames in the range, the frame rate, the index of the first frame decoded, and ""
    or, for a file whose frames ran out well before the count it lists, how far it got."""
    with open_video(path) as container:
        if not container.streams.video:
            raise DecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads; frames still come out in order
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        start = max(0, round(start_sec * fps))
        stop = None if stop_sec is None else max(start + 1, round(stop_sec * fps))
        origin = stream.start_time or 0  # the first frame's pts, in stream.time_base units
        seek = seek and start > 0 and stream.time_base is not None
        if seek:
            # a second early, so B-frames that precede the landing keyframe are not needed ones
            target = max(0.0, start / fps - 1.0)
            container.seek(origin + int(target / stream.time_base), stream=stream)
        frames, first, i = [], None, -1
        for count, frame in enumerate(container.decode(stream)):
            if seek and frame.pts is not None:
                i = round((frame.pts - origin) * stream.time_base * fps)
            else:
                i = count
            first = i if first is None else first
            if stop is not None and i >= stop:
                short = ""
                break
            if i >= start:
                frames.append(frame)
        else:  # the frames ran out: before the end the file lists?
            listed = stream.frames
            if not listed and stream.duration and stream.time_base:
                listed = int(stream.duration * stream.time_base * fps)
            short = f"{i + 1} of the {listed} frames it lists" if cut_short(i + 1, listed) else ""
    return frames, fps, first, short


# quarter turns counter-clockwise -> the FFmpeg filters that apply them (as ffmpeg's autorotate)
_TURNS = {
    1: (("transpose", "cclock"),),
    2: (("hflip", ""), ("vflip", "")),
    3: (("transpose", "clock"),),
}


def upright(frames: list[av.VideoFrame], path: str | Path = "") -> list[av.VideoFrame]:
    """The frames as a player shows them: with the stream's display matrix applied (phone
    videos carry one, e.g. -90 degrees, and store their frames sideways)."""
    turn = Upright(path)
    return [turn(frame) for frame in frames]


class Upright:
    """Applies one stream's display rotation frame by frame, with one filter graph for the
    stream (built on the first frame), so a streaming decode pays it once. A rotation that is no
    multiple of 90 degrees cannot be applied: warned, frames left as stored."""

    def __init__(self, path: str | Path = "") -> None:
        self.path = path
        self.graph: av.filter.Graph | None = None
        self.turns: int | None = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self.turns is None:
            self.turns = self._setup(frame)
        if not self.turns:
            return frame
        self.graph.vpush(frame)
        return self.graph.vpull()

    def _setup(self, first: av.VideoFrame) -> int:
        degrees = first.rotation  # counter-clockwise, from the display matrix; 0 without one
        if abs(degrees - 90 * round(degrees / 90)) > 1:
            log.warning("%s: display rotation %s degrees is no multiple of 90; not applied",
                        self.path, degrees)  # fmt: skip
            return 0
        turns = round(degrees / 90) % 4
        if turns == 0:
            return 0
        graph = av.filter.Graph()
        nodes = [
            graph.add_buffer(
                width=first.width,
                height=first.height,
                format=first.format,
                time_base=first.time_base or Fraction(1, 25),
            )
        ]
        nodes += [graph.add(name, args) for name, args in _TURNS[turns]]
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes).configure()
        self.graph = graph
        return turns


_PLANAR_420 = ("yuv420p", "yuvj420p")  # what H.264 and MPEG-4 part 2 clips decode to


def crop_resize(
    frames: list[av.VideoFrame],
    box: tuple[int, int, int, int],
    size: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Cut the square `box` = (x1, y1, x2, y2) out of each frame at `size` x `size` RGB:
    (T, size, size, 3) uint8, written into `out` when given.

    Crop, resize and RGB conversion cost one swscale call per frame (area filter: antialiased
    when shrinking), on the crop only: 4:2:0 frames are cropped in YUV first, other formats are
    scaled whole and then sliced. Several times faster than converting at full size and resizing
    in torch.
    """
    if out is None:
        out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    x1, y1, x2, _ = box
    if frames[0].format.name in _PLANAR_420:
        x1, y1 = x1 - x1 % 2, y1 - y1 % 2  # chroma rows and columns come in pairs
        side = max(2, (x2 - x1) - (x2 - x1) % 2)
        x1 = min(x1, frames[0].width - side - frames[0].width % 2)
        y1 = min(y1, frames[0].height - side - frames[0].height % 2)
        for t, frame in enumerate(frames):
            crop = _crop_420(frame, x1, y1, side)
            out[t] = crop.reformat(size, size, "rgb24", interpolation="AREA").to_ndarray()
        return out
    scale = size / (x2 - x1)
    width, height = frames[0].width, frames[0].height
    # scale the whole frame so the box becomes size x size, then slice the box out of it
    sw, sh = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = min(round(x1 * scale), sw - size), min(round(y1 * scale), sh - size)
    for t, frame in enumerate(frames):
        rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA")
        out[t] = rgb.to_ndarray()[top : top + size, left : left + size]
    return out


def _crop_420(frame: av.VideoFrame, x1: int, y1: int, side: int) -> av.VideoFrame:
    """A new frame holding the side x side square at (x1, y1) of a planar 4:2:0 frame."""
    crop = av.VideoFrame(side, side, frame.format.name)
    crop.colorspace, crop.color_range = frame.colorspace, frame.color_range
    for i, (src, dst) in enumerate(zip(frame.planes, crop.planes, strict=True)):
        s = 1 if i == 0 else 2  # the chroma planes are subsampled 2x in both directions
        rows = np.frombuffer(src, np.uint8).reshape(-1, src.line_size)  # (H/s, line_size)
        into = np.frombuffer(dst, np.uint8).reshape(-1, dst.line_size)
        into[: side // s, : side // s] = rows[
            y1 // s : (y1 + side) // s, x1 // s : (x1 + side) // s
        ]
    return crop
