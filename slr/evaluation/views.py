"""Multi-view testing: several evenly shifted temporal windows per video, decoded once.

Training sees each clip as `num_frames` segments with one random frame from each (TSN-style), so
every window here also spans the whole clip; windows differ by where in each segment they sample.
View 0 of 1 is exactly the evaluation sampling of `ClipDataset` (evenly spaced, first to last).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from slr.data.dataset import ClipDataset, Failed, Sample
from slr.data.transforms import Box, checked_box, square_box
from slr.data.video import DECODE_ERRORS, DecodeError, crop_resize, read_frames

log = logging.getLogger(__name__)


def shifted_indices(num_available: int, num_frames: int, num_views: int) -> list[list[int]]:
    """`num_views` lists of frame indices: the evenly spaced grid of `uniform_indices`, shifted by
    evenly spread fractions of its step, (v + 0.5) / V - 0.5 for view v (0 for one view), and
    clamped to the clip. A clip no longer than `num_frames` has one window, every frame, V times.
    """
    if num_available <= num_frames:
        return [list(range(num_available))] * num_views
    grid = torch.linspace(0, num_available - 1, num_frames)  # (T,)
    step = (num_available - 1) / max(num_frames - 1, 1)
    shifts = (torch.arange(num_views) + 0.5) / num_views - 0.5  # (V,), in steps
    picks = grid[None, :] + shifts[:, None] * step  # (V, 1) + (1, T) -> (V, T)
    return picks.round().clamp_(0, num_available - 1).long().tolist()


def load_views(
    path: str | Path,
    num_frames: int,
    image_size: int,
    bbox_margin: float,
    num_views: int = 1,
    bbox: Box | None = None,
    start_sec: float = 0.0,
    stop_sec: float | None = None,
    truncated: str = "skip",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode `path` once and cut `num_views` windows out of it, each cropped as at evaluation.

    Returns frames (V, T, 3, S, S) uint8 RGB, zero-padded after each view's length, and lengths
    (V,) int64. Raises DecodeError or one of DECODE_ERRORS for a file that cannot be read, or
    (`truncated="skip"`) whose frames stop well before the count it lists.
    """
    frames, _ = read_frames(path, start_sec, stop_sec, truncated)
    width, height = frames[0].width, frames[0].height
    box = square_box(checked_box(bbox, width, height, str(path)), width, height, bbox_margin)
    crops = np.zeros((num_views, num_frames, image_size, image_size, 3), dtype=np.uint8)
    lengths = []
    for v, picks in enumerate(shifted_indices(len(frames), num_frames, num_views)):
        crop_resize([frames[j] for j in picks], box, image_size, out=crops[v, : len(picks)])
        lengths.append(len(picks))
    clips = torch.from_numpy(crops).permute(0, 1, 4, 2, 3)  # (V, T, S, S, 3) -> (V, T, 3, S, S)
    return clips, torch.tensor(lengths)


class MultiViewClips(Dataset):
    """The videos of an evaluation `ClipDataset`, each as `num_views` windows: items hold frames
    (V, T, 3, S, S) and length (V,), so batches hold (B, V, T, 3, S, S) and (B, V)."""

    def __init__(self, clips: ClipDataset, num_views: int) -> None:
        if clips.transform.train:
            raise ValueError("multi-view testing takes an evaluation ClipDataset (train=False)")
        self.clips, self.num_views = clips, num_views

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> Sample | Failed:
        inst = self.clips.instances[i]
        start_sec, stop_sec = (0.0, None) if self.clips.trimmed else inst.time_range()
        path = self.clips.path(inst)
        try:
            frames, lengths = load_views(
                path,
                self.clips.num_frames,
                self.clips.transform.image_size,
                self.clips.transform.bbox_margin,
                self.num_views,
                inst.bbox,
                start_sec,
                stop_sec,
                self.clips.truncated,
            )
        except (DecodeError, *DECODE_ERRORS) as e:
            log.warning("skipping video %s (%s): %s", inst.video_id, path, e)
            return Failed(video_id=inst.video_id, error=str(e))
        return Sample(
            frames=frames, length=lengths, label=torch.tensor(inst.label), video_id=inst.video_id
        )
