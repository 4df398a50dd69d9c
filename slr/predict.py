"""Classify videos with a trained checkpoint:
`python -m slr.predict ckpt_path=CKPT input=VIDEO_OR_FOLDER [output=FILE.jsonl]`, or one long
video as a timeline of sliding windows: `... input=VIDEO stream=true [output=timeline.jsonl]`.

Each video is decoded whole (or the given frame range), cropped and sampled as at evaluation, and
its top glosses printed with their probabilities and the time each stage took. A file that cannot
be read gets one error line and the rest go on; the exit status is 1 if any failed.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from slr.data.video import DECODE_ERRORS, TRUNCATED, DecodeError
from slr.evaluation.views import load_views
from slr.models.checkpoint import load_checkpoint
from slr.paths import check_writable
from slr.runs import require

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
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        module = load_checkpoint(ckpt_path)
        self.net = module.net.to(self.device).eval()
        self.glosses: list[str] = module.hparams.glosses
        spec = module.hparams.preprocessing
        self.num_frames = num_frames or spec["num_frames"]
        self.image_size = image_size or spec["image_size"]
        self.bbox_margin = spec["bbox_margin"] if bbox_margin is None else bbox_margin
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
        probs = self.net.classify(features, lengths).softmax(dim=-1).mean(dim=0)  # (V, C) -> (C,)
        probs = probs.cpu()
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


def check_predict_settings(cfg: DictConfig) -> None:
    """Refuse values no prediction can use, naming the key."""
    if not isinstance(cfg.topk, int) or cfg.topk < 1:
        raise ValueError(f"topk={cfg.topk}: how many glosses to print per video, 1 or more")
    for key in ("num_frames", "image_size"):
        value = cfg.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{key}={value}: 1 or more, or null for the checkpoint's own")
    if cfg.get("bbox_margin") is not None and cfg.bbox_margin < 0:
        raise ValueError(f"bbox_margin={cfg.bbox_margin}: 0 or more, or null")
    if cfg.get("truncated", "use") not in TRUNCATED:
        raise ValueError(f"truncated={cfg.truncated}: use one of {TRUNCATED}")


def predict(cfg: DictConfig) -> list[dict]:
    """Classify every video of `cfg.input`, printing and optionally writing each result."""
    start_sec, stop_sec = frame_range(cfg.frame_start, cfg.frame_end, cfg.frame_rate)
    bbox = None
    if cfg.bbox is not None:
        bbox = tuple(int(v) for v in cfg.bbox)
        if len(bbox) != 4 or bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
            raise ValueError(f"bbox={list(cfg.bbox)}: give [x1, y1, x2, y2] with x2 > x1, y2 > y1")
    if cfg.num_views < 1:
        raise ValueError(f"num_views={cfg.num_views}: use 1 or more windows per video")
    check_predict_settings(cfg)
    if cfg.get("stream", False):
        if cfg.output:
            check_writable(cfg.output, "output")
        return [predict_stream(cfg, start_sec, stop_sec, bbox)]
    videos = find_videos(cfg.input)
    if cfg.output:  # checked now: a path that cannot be written fails before the model loads
        check_writable(cfg.output, "output")
    load_start = time.perf_counter()
    predictor = Predictor(
        cfg.ckpt_path,
        cfg.device,
        cfg.topk,
        cfg.num_views,
        cfg.num_frames,
        cfg.image_size,
        cfg.bbox_margin,
        cfg.get("truncated", "use"),
    )
    print(
        f"model loaded in {time.perf_counter() - load_start:.2f} s (warm-up clip "
        f"{predictor.warmup_seconds:.2f} s) on {predictor.device}, {torch.get_num_threads()} "
        f"threads; {predictor.num_frames} frames at {predictor.image_size} px, "
        f"{predictor.num_views} view(s), {len(predictor.glosses)} glosses"
    )
    sink = open(cfg.output, "w") if cfg.output else None  # noqa: SIM115 (written as we go)
    results = []
    try:
        for result in predict_all(predictor, videos, start_sec, stop_sec, bbox):
            results.append(result)
            if "error" in result:
                log.error("%s: %s", result["video"], result["error"])
            else:
                print(format_result(result), flush=True)
            if sink:
                sink.write(json.dumps(result) + "\n")
                sink.flush()  # a later crash keeps the lines already written
    finally:
        if sink:
            sink.close()
    print(timing_summary(results))
    if cfg.output:
        print(f"results written to {cfg.output}")
    return results


def predict_stream(
    cfg: DictConfig, start_sec: float, stop_sec: float | None, bbox: tuple | None
) -> dict:
    """`stream=true`: one video as a timeline of windows, each printed as it is classified."""
    from slr.inference.streaming import check_window
    from slr.inference.timeline import csv_path, stream_timeline

    path = Path(cfg.input)
    if not path.is_file():
        raise FileNotFoundError(f"input={path}: stream=true takes one video file")
    check_window(1 if cfg.window is None else cfg.window, cfg.stride)  # before the model loads
    for name in ("output", "annotated"):
        if cfg.get(name):  # made now: a path that cannot be written fails before the model loads
            Path(cfg[name]).parent.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(
        cfg.ckpt_path, cfg.device, cfg.topk, 1, cfg.num_frames, cfg.image_size, cfg.bbox_margin
    )
    # the default window spans twice the frames the model sees, less one: evenly spaced picks
    # then fall on every other frame, so with an even stride windows share all their features
    window = 2 * (predictor.num_frames - 1) + 1 if cfg.window is None else cfg.window
    print(
        f"model on {predictor.device}, {torch.get_num_threads()} threads; window {window} "
        f"frames, stride {cfg.stride}, {predictor.num_frames} frames seen per window at "
        f"{predictor.image_size} px, {len(predictor.glosses)} glosses"
    )

    def show(line: dict) -> None:
        top = ", ".join(
            f"{g} {p:.3f}" for g, p in zip(line["glosses"], line["probabilities"], strict=True)
        )
        print(f"{line['start_s']:8.2f}-{line['end_s']:8.2f} s  {top}", flush=True)

    try:
        summary = stream_timeline(
            predictor.net, predictor.glosses, path, predictor.num_frames, predictor.image_size,
            window, cfg.stride, predictor.bbox_margin, bbox, start_sec, stop_sec,
            predictor.topk, predictor.device, cfg.output, cfg.get("annotated"), on_window=show,
        )  # fmt: skip
    except (DecodeError, *DECODE_ERRORS) as e:
        log.error("%s: cannot decode (%s): %s", path, type(e).__name__, e)
        return {"video": str(path), "error": f"cannot decode ({type(e).__name__}): {e}"}
    t = summary["timing"]
    print(
        f"{summary['windows']} windows over {summary['frames']} frames "
        f"({summary['video_seconds']:.2f} s at {summary['fps']:g} fps; backbone ran on "
        f"{summary['encoded_frames']}) in {summary['wall_seconds']:.2f} s: real-time factor "
        f"{summary['realtime_factor']:.2f} (decode {t['decode']:.2f}, crop {t['crop']:.2f}, "
        f"backbone {t['backbone']:.2f}, LSTM+head {t['lstm_head']:.2f}, mp4 {t['write']:.2f} s)"
    )
    if cfg.output:
        print(f"timeline written to {cfg.output} and {csv_path(cfg.output)}")
    if cfg.get("annotated"):
        print(f"annotated video written to {cfg.annotated}")
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    require(cfg, "python -m slr.predict ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt "
            "input=VIDEO_OR_FOLDER")  # fmt: skip
    results = predict(cfg)
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
