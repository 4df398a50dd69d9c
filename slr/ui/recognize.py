"""What the demo page does with an upload or a webcam frame, without Gradio: a clip's top glosses,
its stage timings and the frames the model saw; and a live session over webcam frames."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from slr.data.dataset import load_views
from slr.data.video import DECODE_ERRORS, DecodeError
from slr.inference.predictor import Predictor, frame_range
from slr.inference.streaming import StreamingRecognizer


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()  # timings of queued GPU work would be meaningless
    return time.perf_counter()


class UploadError(ValueError):
    """An upload or an option the page cannot use; its message is shown on the page."""


def parse_bbox(text: str | None) -> tuple[int, int, int, int] | None:
    """ "x1, y1, x2, y2" in source pixels, or blank for the centre square."""
    if text is None or not text.strip():
        return None
    try:
        box = tuple(int(round(float(v))) for v in text.replace(",", " ").split())
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1] or min(box) < 0:
        raise UploadError(f"bbox '{text}': give x1, y1, x2, y2 in pixels with x2 > x1, y2 > y1")
    return box


def recognize_clip(
    predictor: Predictor,
    path: str | Path | None,
    frame_start: int = 1,
    frame_end: int = -1,
    frame_rate: float = 25.0,
    bbox: str | None = None,
    num_views: int = 1,
) -> dict:
    """Classify one uploaded clip as `slr.predict` would.

    Returns {"glosses", "probabilities", "timing" (seconds for decode, backbone, lstm_head),
    "frames" (the (S, S, 3) uint8 crops of view 0 the model saw, in order)}. Raises UploadError
    with a message for the page when the file or an option cannot be used.
    """
    if not path:
        raise UploadError("no video: upload a file or record one with the webcam")
    try:
        start_sec, stop_sec = frame_range(int(frame_start), int(frame_end), float(frame_rate))
    except (ValueError, TypeError) as e:
        raise UploadError(str(e)) from None
    box = parse_bbox(bbox)
    if int(num_views) < 1:
        raise UploadError(f"num_views={num_views}: use 1 or more windows")
    name = Path(path).name
    start = time.perf_counter()
    try:
        clips, lengths = load_views(
            path,
            predictor.num_frames,
            predictor.image_size,
            predictor.bbox_margin,
            int(num_views),
            box,
            start_sec,
            stop_sec,
        )  # (V, T, 3, S, S), (V,)
    except (DecodeError, *DECODE_ERRORS) as e:
        reason = str(e).replace(f": '{path}'", "").replace(str(path), name)  # no server paths
        raise UploadError(
            f"{name} could not be read as a video ({type(e).__name__}: {reason}). Upload a "
            "video file (mp4, webm, mov, avi, mkv, ...) or check the frame range."
        ) from None
    timing = {"decode": time.perf_counter() - start}
    with torch.inference_mode():
        t0 = _clock(predictor.device)
        features = predictor.net.encoder(clips.to(predictor.device), lengths)  # (V, T, 1280)
        t1 = _clock(predictor.device)
        logits = predictor.net.classify(features, lengths)  # (V, C)
        probs = logits.softmax(dim=-1).mean(dim=0).cpu()  # (V, C) -> (C,)
        t2 = _clock(predictor.device)
    timing.update(backbone=t1 - t0, lstm_head=t2 - t1)
    top = probs.topk(predictor.topk)
    seen = clips[0, : int(lengths[0])].permute(0, 2, 3, 1).numpy()  # (T, 3, S, S) -> (T, S, S, 3)
    return {
        "glosses": [predictor.glosses[i] for i in top.indices.tolist()],
        "probabilities": top.values.tolist(),
        "timing": timing,
        "frames": list(seen),
    }


class LiveSession:
    """One webcam viewer's sliding windows: frames in, the latest window's top glosses out.

    Args:
        predictor: the loaded model (shared by every session).
        every: seconds between the frames the page sends, taken as the stream's frame period.
        window, stride: in webcam frames.
    """

    def __init__(self, predictor: Predictor, every: float, window: int, stride: int) -> None:
        self.recognizer = StreamingRecognizer(
            predictor.net,
            predictor.glosses,
            predictor.num_frames,
            predictor.image_size,
            window,
            stride,
            fps=1.0 / every,
            bbox_margin=predictor.bbox_margin,
            topk=predictor.topk,
            device=predictor.device,
        )
        self.latest: dict | None = None
        self.seconds = 0.0  # model time spent, for the page's per-frame cost

    def step(self, frame: np.ndarray) -> dict | None:
        """Push one (H, W, 3) uint8 RGB frame; the latest window's result, or None before the
        first window is full."""
        start = time.perf_counter()
        for result in self.recognizer.push(frame):
            self.latest = result
        self.seconds += time.perf_counter() - start
        return self.latest
