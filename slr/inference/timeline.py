"""A long video as a timeline of windows: `python -m slr.predict ... stream=true`.

One decoding pass through `StreamingRecognizer`; each window becomes a JSONL line and a CSV row
as soon as it is classified, and optionally every frame goes to an mp4 with the top gloss of the
latest finished window drawn on it (what a live viewer would have seen at that moment).
"""

from __future__ import annotations

import csv
import json
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import ImageDraw, ImageFont

from slr.data.transforms import Box
from slr.data.video import DecodeError
from slr.inference.streaming import StreamingRecognizer, video_frames

CSV_FIELDS = ["start_frame", "end_frame", "start_s", "end_s", "frames"]


def csv_path(output: str | Path) -> Path:
    """The CSV written next to a timeline: timeline.jsonl -> timeline.csv."""
    output = Path(output)
    return output.with_suffix(".csv") if output.suffix != ".csv" else output.with_suffix(".csv.csv")


def window_line(result: dict) -> dict:
    """A window's result without its raw logits: the timeline's JSON line."""
    return {k: v for k, v in result.items() if k != "logits"}


def csv_row(result: dict, topk: int) -> list:
    row = [result[k] for k in CSV_FIELDS]
    for i in range(topk):
        has = i < len(result["glosses"])
        row += [result["glosses"][i], result["probabilities"][i]] if has else ["", ""]
    return row


class AnnotatedWriter:
    """Frames in, an H.264 mp4 out, each frame with a caption bar at its top."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int) -> None:
        self.container = av.open(str(path), "w")
        rate = Fraction(fps).limit_denominator(1001)
        try:
            self.stream = self.container.add_stream("libx264", rate=rate)
            self.stream.options = {"crf": "23", "preset": "veryfast"}
        except (av.FFmpegError, ValueError):  # a PyAV build without libx264
            self.stream = self.container.add_stream("mpeg4", rate=rate)
        # yuv420p wants even sides: the odd last row or column is cut off
        self.width, self.height = width - width % 2, height - height % 2
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        self.font = ImageFont.load_default(size=max(12, self.height // 18))

    def write(self, frame: av.VideoFrame, caption: str) -> None:
        image = frame.to_image()  # RGB, full size
        draw = ImageDraw.Draw(image)
        bar = self.font.size + 8
        draw.rectangle((0, 0, image.width, bar), fill=(0, 0, 0))
        draw.text((6, 4), caption, fill=(255, 255, 0), font=self.font)
        rgb = np.asarray(image)[: self.height, : self.width]
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(out):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def caption(result: dict | None) -> str:
    if result is None:
        return "..."
    return f"{result['glosses'][0]} {result['probabilities'][0]:.2f}"


def stream_timeline(
    net: torch.nn.Module,
    glosses: list[str],
    path: str | Path,
    num_frames: int,
    image_size: int,
    window: int,
    stride: int,
    bbox_margin: float = 0.15,
    bbox: Box | None = None,
    start_sec: float = 0.0,
    stop_sec: float | None = None,
    topk: int = 5,
    device: str | torch.device = "cpu",
    output: str | Path | None = None,
    annotated: str | Path | None = None,
    on_window=None,
) -> dict:
    """Classify `path` window by window in one pass; write the timeline as asked.

    Args:
        output: FILE.jsonl, one window per line; FILE.csv beside it holds the same rows.
        annotated: FILE.mp4 with the latest top gloss drawn on every frame.
        on_window: called with each window's line as it is classified.

    Returns a summary: windows, frames, video and wall seconds, the real-time factor (video
    seconds per wall second, from the first decode to the last window; model loading excluded),
    and the seconds spent per stage. Raises DecodeError or one of DECODE_ERRORS for a file that
    cannot be read.
    """
    start_wall = time.perf_counter()
    fps, frames = video_frames(path, start_sec, stop_sec)
    first = max(0, round(start_sec * fps))
    recognizer = StreamingRecognizer(
        net, glosses, num_frames, image_size, window, stride, fps, bbox, bbox_margin, topk,
        device, first_frame=first,
    )  # fmt: skip
    lines, writer, latest = [], None, None
    timing = {"decode": 0.0, "write": 0.0}
    sinks = []
    try:
        if output:
            jsonl = open(output, "w")  # noqa: SIM115 (written as we go, closed below)
            sinks.append(jsonl)
            table = open(csv_path(output), "w", newline="")  # noqa: SIM115
            sinks.append(table)
            rows = csv.writer(table)
            rows.writerow(
                CSV_FIELDS + [f"{k}{i + 1}" for i in range(recognizer.topk) for k in ("gloss", "p")]
            )

        def emit(results: list[dict]) -> None:
            nonlocal latest
            for result in results:
                line = window_line(result)
                lines.append(line)
                latest = line
                if output:
                    jsonl.write(json.dumps(line) + "\n")
                    rows.writerow(csv_row(line, recognizer.topk))
                    jsonl.flush()
                    table.flush()
                if on_window:
                    on_window(line)

        tick = time.perf_counter()
        for frame in frames:
            timing["decode"] += time.perf_counter() - tick
            emit(recognizer.push(frame))
            if annotated:
                tick = time.perf_counter()
                if writer is None:
                    writer = AnnotatedWriter(annotated, fps, frame.width, frame.height)
                writer.write(frame, caption(latest))
                timing["write"] += time.perf_counter() - tick
            tick = time.perf_counter()
        timing["decode"] += time.perf_counter() - tick
        emit(recognizer.finish())
    finally:
        frames.close()  # the generator closes the container
        if writer is not None:
            writer.close()
        for sink in sinks:
            sink.close()
    if recognizer.count == 0:
        raise DecodeError(f"{path}: no frames decoded in [{start_sec}, {stop_sec}) s")
    wall = time.perf_counter() - start_wall
    video_seconds = recognizer.count / fps
    timing.update(recognizer.timing)
    return {
        "video": str(path),
        "windows": len(lines),
        "frames": recognizer.count,
        "encoded_frames": recognizer.encoded,
        "fps": round(fps, 3),
        "video_seconds": round(video_seconds, 3),
        "wall_seconds": round(wall, 3),
        "realtime_factor": round(video_seconds / wall, 3),
        "timing": {k: round(v, 3) for k, v in timing.items()},
    }
