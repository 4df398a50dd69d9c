"""Classifying video files with a trained checkpoint: the `Predictor` behind slr.predict and the
demo page, and the lines slr.predict prints."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from slr.data.dataset import load_views
from slr.data.video import DECODE_ERRORS, DecodeError
from slr.models.checkpoint import load_trained
from slr.models.mobilenet_lstm import mean_over_views

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp",
    ".ogv", ".ts", ".gif",
}  # fmt: skip
STAGES = {"decode": "decode", "backbone": "backbone", "lstm_head": "LSTM+head"}  # key: label


def find_videos(path: str | Path) -> list[Path]:
    """`path` itself if it is a file (whatever its suffix), else the video files in the folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input={path} does not exist: give a video file or a folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if len(videos) < len(files):
        others = [p.name for p in files if p.suffix.lower() not in VIDEO_SUFFIXES]
        log.info("ignoring %d files without a video suffix: %s", len(others), ", ".join(others))
    if not videos:
        raise FileNotFoundError(
            f"input={path} holds no video files (suffixes {', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    return videos


class Predictor:
    """A checkpoint's network and input spec, classifying one video file per call.

    Args:
        ckpt_path: an slr checkpoint (it holds the glosses and the preprocessing it was trained on).
        device: "cpu", "cuda" or "auto".
        topk: how many glosses to return per video.
        num_views: evenly shifted temporal windows per video; their softmax is averaged.
        num_frames, image_size, bbox_margin: override the checkpoint's preprocessing.
        truncated: a file whose frames stop well before the count it lists: "use" what decodes
            (with a warning) or "skip" it (an error result).
        model_overrides: `model.*` settings given on the command line (see `load_trained`).
    """

    def __init__(
        self,
        ckpt_path: str | Path,
        device: str = "auto",
        topk: int = 5,
        num_views: int = 1,
        num_frames: int | None = None,
        image_size: int | None = None,
        bbox_margin: float | None = None,
        truncated: str = "use",
        model_overrides: dict | None = None,
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        trained = load_trained(ckpt_path, model_overrides=model_overrides)
        self.net = trained.net.to(self.device).eval()
        self.glosses = trained.glosses
        self.preprocessing = trained.preprocessing.override(
            num_frames=num_frames, image_size=image_size, bbox_margin=bbox_margin
        )
        self.num_frames = self.preprocessing.num_frames
        self.image_size = self.preprocessing.image_size
        self.bbox_margin = self.preprocessing.bbox_margin
        self.topk = min(topk, len(self.glosses))
        self.num_views = num_views
        self.truncated = truncated
        # one clip through the network first: its one-off set-up costs (kernel selection,
        # allocator growth) belong to loading, not to the first video's latency
        start = time.perf_counter()
        self._infer(torch.zeros(1, 1, self.num_frames, 3, self.image_size, self.image_size,
                                dtype=torch.uint8), torch.tensor([[self.num_frames]]))  # fmt: skip
        self.warmup_seconds = time.perf_counter() - start

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    @torch.inference_mode()
    def _infer(self, clips: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """(1, V, T, 3, S, S) uint8 clips and (1, V) lengths -> (C,) probabilities and timings."""
        frames = clips.flatten(0, 1).to(self.device)  # (1, V, T, 3, S, S) -> (V, T, 3, S, S)
        lengths = lengths.flatten()  # (V,)
        start = self._sync()
        features = self.net.encoder(frames, lengths)  # (V, T, 1280)
        mid = self._sync()
        probs = mean_over_views(self.net.classify(features, lengths), len(lengths))[0].cpu()  # (C,)
        end = self._sync()
        return probs, {"backbone": mid - start, "lstm_head": end - mid}

    def __call__(
        self,
        path: str | Path,
        start_sec: float = 0.0,
        stop_sec: float | None = None,
        bbox: tuple[int, int, int, int] | None = None,
    ) -> dict:
        """{"video", "glosses", "probabilities", "seconds", "timing"} for one video. Raises
        DecodeError or one of DECODE_ERRORS if the file cannot be read."""
        start = time.perf_counter()
        clips, lengths = load_views(
            path,
            self.num_frames,
            self.image_size,
            self.bbox_margin,
            self.num_views,
            bbox,
            start_sec,
            stop_sec,
            self.truncated,
        )  # (V, T, 3, S, S), (V,)
        timing = {"decode": time.perf_counter() - start}
        probs, model_timing = self._infer(clips[None], lengths[None])
        timing.update(model_timing)
        top = probs.topk(self.topk)
        return {
            "video": str(path),
            "glosses": [self.glosses[i] for i in top.indices.tolist()],
            "probabilities": [round(p, 6) for p in top.values.tolist()],
            "frames": int(lengths.max()),
            "seconds": round(sum(timing.values()), 4),
            "timing": {k: round(v, 4) for k, v in timing.items()},
        }


def predict_all(
    predictor: Predictor,
    videos: list[Path],
    start_sec: float = 0.0,
    stop_sec: float | None = None,
    bbox: tuple[int, int, int, int] | None = None,
) -> Iterator[dict]:
    """One result per video, in order: its prediction, or {"video", "error"}."""
    for path in videos:
        try:
            yield predictor(path, start_sec, stop_sec, bbox)
        except (DecodeError, *DECODE_ERRORS) as e:
            yield {"video": str(path), "error": f"cannot decode ({type(e).__name__}): {e}"}


def format_result(result: dict) -> str:
    """A prediction as the lines printed for it."""
    t = result["timing"]
    lines = [
        f"{result['video']}: {result['seconds']:.3f} s (decode {t['decode']:.3f}, backbone "
        f"{t['backbone']:.3f}, LSTM+head {t['lstm_head']:.3f})"
    ]
    width = max(len(g) for g in result["glosses"])
    for rank, (gloss, p) in enumerate(zip(result["glosses"], result["probabilities"], strict=True)):
        lines.append(f"  {rank + 1}. {gloss:<{width}}  {p:.4f}")
    return "\n".join(lines)


def timing_summary(results: list[dict]) -> str:
    """Median and mean seconds per stage over the videos that succeeded."""
    done = [r for r in results if "error" not in r]
    lines = [f"{len(done)} of {len(results)} videos classified, {len(results) - len(done)} failed"]
    if done:
        lines.append(f"{'seconds per video':<18}{'median':>8}{'mean':>8}{'max':>8}")
        for stage, label in (*STAGES.items(), ("total", "total")):
            values = [r["seconds"] if stage == "total" else r["timing"][stage] for r in done]
            lines.append(
                f"{label:<18}{statistics.median(values):>8.3f}{statistics.mean(values):>8.3f}"
                f"{max(values):>8.3f}"
            )
    return "\n".join(lines)


def frame_range(frame_start: int, frame_end: int, frame_rate: float) -> tuple[float, float | None]:
    """1-based inclusive frames counted at `frame_rate` as [start, stop) seconds; -1 = the end."""
    if frame_start < 1 or (frame_end != -1 and frame_end < frame_start) or frame_rate <= 0:
        raise ValueError(
            f"frame_start={frame_start}, frame_end={frame_end}, frame_rate={frame_rate}: frames "
            "count from 1, frame_end is -1 (the end) or at least frame_start, frame_rate > 0"
        )
    return (frame_start - 1) / frame_rate, None if frame_end == -1 else frame_end / frame_rate
