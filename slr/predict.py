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
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from slr.data.video import DECODE_ERRORS, TRUNCATED, DecodeError
from slr.inference.predictor import (
    Predictor,
    find_videos,
    format_result,
    frame_range,
    predict_all,
    timing_summary,
)
from slr.runs.cli import model_overrides, quiet_known_warnings, require
from slr.runs.files import check_writable

log = logging.getLogger(__name__)


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
        model_overrides(cfg),
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
        cfg.ckpt_path, cfg.device, cfg.topk, 1, cfg.num_frames, cfg.image_size, cfg.bbox_margin,
        model_overrides=model_overrides(cfg),
    )  # fmt: skip
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
    quiet_known_warnings()
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    require(cfg, "python -m slr.predict ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt "
            "input=VIDEO_OR_FOLDER")  # fmt: skip
    results = predict(cfg)
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
