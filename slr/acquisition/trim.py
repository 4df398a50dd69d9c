"""Cut instances out of a source video, re-encode, and probe the result. One decoding pass serves
every instance cut from the same source (a YouTube video may hold dozens of signs)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from slr.data.video import DECODE_ERRORS, DecodeError, cut_short, open_video
from slr.data.wlasl import Instance

log = logging.getLogger(__name__)


def source_range(inst: Instance, fps: float) -> tuple[int, int | None]:
    """The instance's frames in a `fps` video: [start, stop) 0-based, stop None = to the end.

    frame_start/frame_end are 1-based, inclusive and counted at inst.fps (25 in WLASL); they are
    mapped through time, with the rounding `video.read_frames` uses, so a trimmed file holds the
    frames the loader would cut with data.trimmed=false.
    """
    start_sec, stop_sec = inst.time_range()
    start = max(0, round(start_sec * fps))
    return start, None if stop_sec is None else max(start + 1, round(stop_sec * fps))


def pick_encoder() -> str:
    """H.264 through libx264 where this PyAV build has it, else another H.264 encoder, else
    MPEG-4 part 2 (both decode everywhere PyAV does)."""
    for name in ("libx264", "libopenh264", "h264", "mpeg4"):
        try:
            codec = av.codec.Codec(name, "w")
        except (av.FFmpegError, ValueError):
            continue
        if codec.type == "video":
            return name
    raise RuntimeError("this PyAV build has no H.264 or MPEG-4 encoder")


def _encoder_options(codec: str) -> dict[str, str]:
    if codec == "libx264":
        return {"crf": "18", "preset": "veryfast"}  # visually lossless; encoding stays cheap
    if codec == "mpeg4":
        return {"qscale": "3"}
    return {}


@dataclass
class Cut:
    """One instance to cut: where it goes and, after `cut_video`, what came of it."""

    inst: Instance
    path: Path  # the output file (a temporary name; the caller renames it when it probes well)
    start: int = 0  # source frames [start, stop), set by cut_video
    stop: int | None = None
    written: int = 0
    clamped: str = ""  # why the range was shortened, if it was
    error: str = ""


class _Writer:
    """An mp4 encoder for one cut, opened at its first frame."""

    def __init__(
        self, path: Path, rate: Fraction, width: int, height: int, codec: str, rotation: int = 0
    ) -> None:
        self.container = av.open(str(path), "w", format="mp4")
        self.stream = self.container.add_stream(codec, rate=rate, options=_encoder_options(codec))
        if rotation:  # keep the source's display matrix: the cut plays (and loads) upright too
            self.stream.set_display_rotation(rotation)
        # 4:2:0 needs even sides: pad right/bottom by a pixel, so bbox coordinates still hold
        self.pad = (height % 2, width % 2)
        self.stream.width, self.stream.height = width + self.pad[1], height + self.pad[0]
        self.stream.pix_fmt = "yuv420p"
        self.time_base = 1 / rate
        self.count = 0

    def write(self, frame: av.VideoFrame) -> None:
        if any(self.pad):
            rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) -> (H + ph, W + pw, 3)
            rgb = np.pad(rgb, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = self.count, self.time_base
        self.container.mux(self.stream.encode(frame))
        self.count += 1

    def close(self) -> None:
        self.container.mux(self.stream.encode())
        self.container.close()


def cut_video(source: Path, cuts: list[Cut], codec: str) -> int | None:
    """Decode `source` once and encode each cut's frames into its path. Sets each cut's range,
    `written`, `clamped` and `error`. Returns the number of frames the source decoded to, or
    None when every cut ended before the source did (decoding stops there).

    An end past the last frame is clamped (and said so); a start past it is an error; a decoding
    error fails the cuts not finished by then and keeps those that were.
    """
    writers: dict[int, _Writer] = {}  # open encoders: cuts under way, closed when done
    total = None
    try:
        with open_video(source) as container:
            if not container.streams.video:
                raise DecodeError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
            rate = Fraction(rate).limit_denominator(1001 * 1000)
            for cut in cuts:
                cut.start, cut.stop = source_range(cut.inst, float(rate))
            last = None if any(c.stop is None for c in cuts) else max(c.stop for c in cuts)
            count = 0
            for i, frame in enumerate(container.decode(stream)):
                if last is not None and i >= last:
                    break
                for k, cut in enumerate(cuts):
                    if cut.start <= i and (cut.stop is None or i < cut.stop):
                        if k not in writers:
                            writers[k] = _Writer(
                                cut.path, rate, frame.width, frame.height, codec, frame.rotation
                            )
                        writers[k].write(frame)
                        if i + 1 == cut.stop:  # done: a source with 100+ signs must not hold
                            _close(cut, writers.pop(k))  # 100+ encoders open at once
                count = i + 1
            else:
                total = count
                _check_not_cut_short(count, stream.frames)
    except (DecodeError, *DECODE_ERRORS) as e:
        for cut in cuts:
            finished = cut.stop is not None and cut.written == cut.stop - cut.start
            if not finished:
                cut.error = cut.error or f"decoding failed: {e}"
    finally:
        for k, writer in writers.items():  # those running to the end, or cut short
            _close(cuts[k], writer)
    if total is not None:
        for cut in cuts:
            if cut.error:
                continue
            if cut.start >= total:
                cut.error = (
                    f"frame_start {cut.inst.frame_start} is past the video's end "
                    f"({total} frames at {float(rate):.4g} fps)"
                )
            elif cut.stop is not None and cut.stop > total:
                cut.clamped = (
                    f"frame_end {cut.inst.frame_end} is past the last frame "
                    f"({total} at {float(rate):.4g} fps); clamped"
                )
                log.info("%s: %s", cut.inst.video_id, cut.clamped)
    return total


def _check_not_cut_short(decoded: int, listed: int) -> None:
    """Some WLASL clips list 1-3 frames more than decode; far fewer means a truncated file."""
    if cut_short(decoded, listed):
        raise DecodeError(f"decoded {decoded} of the {listed} frames the file lists")


def _close(cut: Cut, writer: _Writer) -> None:
    cut.written = writer.count
    try:
        writer.close()
    except DECODE_ERRORS as e:
        cut.error = cut.error or f"encoding failed: {e}"


@dataclass
class Probe:
    frames: int
    fps: float
    width: int
    height: int


def probe(path: Path, expected: int | None = None) -> Probe:
    """Decode every frame of `path`; the first and last must convert to RGB, and the count must
    be `expected` when given (frames just encoded) or near what the container lists. Raises
    DecodeError (or one of DECODE_ERRORS) naming what failed."""
    with open_video(path) as container:
        if not container.streams.video:
            raise DecodeError("no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        first = last = None
        count = 0
        for frame in container.decode(stream):
            if first is None:
                first = frame.to_ndarray(format="rgb24")
            last = frame
            count += 1
        if first is None:
            raise DecodeError("no frames decode")
        last.to_ndarray(format="rgb24")
        if expected is not None and count != expected:
            raise DecodeError(f"{count} frames decode, {expected} were written")
        _check_not_cut_short(count, stream.frames)
        return Probe(count, float(rate) if rate else 0.0, first.shape[1], first.shape[0])
