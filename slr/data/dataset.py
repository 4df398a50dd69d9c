"""The clip dataset: one WLASL instance -> a fixed-size frame tensor, its true length and label.
A video that fails to decode yields a `Failed` record, so the batch skips it by name instead of
ending the epoch or being silently replaced by another video."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from slr.data.sampling import jittered_indices, shifted_indices
from slr.data.transforms import Box, ClipTransform, checked_box, square_box
from slr.data.video import DECODE_ERRORS, DecodeError, crop_resize, read_frames
from slr.data.wlasl import Instance

log = logging.getLogger(__name__)


class Sample(TypedDict, total=False):
    # (T, 3, S, S) uint8 RGB (the model normalizes), zeros after `length`; (V, T, 3, S, S) and
    # length (V,) with V > 1 views
    frames: torch.Tensor
    features: torch.Tensor  # (T, 1280) float32 backbone features, instead of frames when cached
    length: torch.Tensor  # () int64, real frames in `frames`, 1..T
    label: torch.Tensor  # () int64, gloss position in the index
    video_id: str


class Failed(TypedDict):
    video_id: str
    error: str


class Batch(TypedDict, total=False):
    frames: torch.Tensor  # (B, T, 3, S, S) uint8
    features: torch.Tensor  # (B, T, 1280) float32, instead of frames when cached
    length: torch.Tensor  # (B,) int64
    label: torch.Tensor  # (B,) int64
    video_id: list[str]  # (B,)
    skipped: list[str]  # ids in this batch that failed to decode, already logged
    errors: dict[str, str]  # their errors, by id


class ClipDataset(Dataset):
    """Clips of the given instances, read from `video_dir / instance.file()`.

    Args:
        instances: the videos, all of which are expected to exist (missing ones are filtered and
            counted before this point).
        video_dir: the folder instance files are relative to (`<video_id>.mp4` for WLASL).
        num_frames: T, frames per clip; shorter clips are zero-padded and keep their true length.
        transform: spatial preset; `transform.train` also selects jittered temporal sampling.
        trimmed: the files are already cut to the instance's frame range (as the official
            preprocessing writes them); False cuts [frame_start, frame_end] out of the file here.
        truncated: a file whose frames stop well before the count it lists: "skip" it (a
            `Failed` record) or "use" the frames that decode (with a warning).
        num_views: evaluation only: V > 1 evenly shifted windows per video (see
            `shifted_indices`), decoded once; items then hold frames (V, T, 3, S, S), length (V,).
    """

    def __init__(
        self,
        instances: Sequence[Instance],
        video_dir: str | Path,
        num_frames: int,
        transform: ClipTransform,
        trimmed: bool = True,
        truncated: str = "skip",
        num_views: int = 1,
    ) -> None:
        if num_views < 1 or (num_views > 1 and transform.train):
            raise ValueError(f"num_views={num_views}: 1, or more for evaluation (train=False)")
        self.instances = list(instances)
        self.video_dir = Path(video_dir)
        self.num_frames = num_frames
        self.transform = transform
        self.trimmed = trimmed
        self.truncated = truncated
        self.num_views = num_views

    def __len__(self) -> int:
        return len(self.instances)

    def path(self, inst: Instance) -> Path:
        return self.video_dir / inst.file()

    def __getitem__(self, i: int) -> Sample | Failed:
        return self.get(i)

    def get(
        self, i: int, generator: torch.Generator | None = None, warn: bool = True
    ) -> Sample | Failed:
        """Item i; train-time randomness (frames, crop, colour) drawn from `generator`. A
        failure is logged unless `warn` is False (the caller reports it)."""
        inst = self.instances[i]
        try:
            return self.load(inst, generator)
        except (DecodeError, *DECODE_ERRORS) as e:
            if warn:
                log.warning("skipping video %s (%s): %s", inst.video_id, self.path(inst), e)
            return Failed(video_id=inst.video_id, error=str(e))

    def load(self, inst: Instance, generator: torch.Generator | None = None) -> Sample:
        start_sec, stop_sec = (0.0, None) if self.trimmed else inst.time_range()
        label = torch.tensor(inst.label)
        if not self.transform.train:
            t = self.transform
            frames, lengths = load_views(
                self.path(inst), self.num_frames, t.image_size, t.bbox_margin, self.num_views,
                inst.bbox, start_sec, stop_sec, self.truncated,
            )  # fmt: skip
            if self.num_views == 1:
                frames, lengths = frames[0], lengths[0]  # (1, T, 3, S, S) -> (T, 3, S, S)
            return Sample(frames=frames, length=lengths, label=label, video_id=inst.video_id)
        frames, _ = read_frames(self.path(inst), start_sec, stop_sec, self.truncated)
        picks = jittered_indices(len(frames), self.num_frames, generator)
        width, height = frames[0].width, frames[0].height
        box = self.transform.box(inst.bbox, width, height, generator, name=str(self.path(inst)))
        size, n = self.transform.image_size, len(picks)
        crops = np.zeros((self.num_frames, size, size, 3), dtype=np.uint8)
        crop_resize([frames[j] for j in picks], box, size, out=crops[:n])
        clip = torch.from_numpy(crops).permute(0, 3, 1, 2)  # (T, S, S, 3) -> (T, 3, S, S) view
        clip[:n] = self.transform(crops[:n], generator)
        return Sample(frames=clip, length=torch.tensor(n), label=label, video_id=inst.video_id)


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
    # frames are written in place into the zero-padded clips: no copy
    crops = np.zeros((num_views, num_frames, image_size, image_size, 3), dtype=np.uint8)
    lengths = []
    for v, picks in enumerate(shifted_indices(len(frames), num_frames, num_views)):
        crop_resize([frames[j] for j in picks], box, image_size, out=crops[v, : len(picks)])
        lengths.append(len(picks))
    clips = torch.from_numpy(crops).permute(0, 1, 4, 2, 3)  # (V, T, S, S, 3) -> (V, T, 3, S, S)
    return clips, torch.tensor(lengths)


def collate_clips(items: Sequence[Sample | Failed]) -> Batch:
    """Stack the clips that loaded; name the ones that did not. A batch may end up empty."""
    ok = [s for s in items if "error" not in s]
    batch = Batch(video_id=[s["video_id"] for s in ok])
    batch["errors"] = {s["video_id"]: s["error"] for s in items if "error" in s}
    batch["skipped"] = list(batch["errors"])
    if not ok:
        return batch
    for key, value in ok[0].items():
        if isinstance(value, torch.Tensor):
            batch[key] = torch.stack([s[key] for s in ok])
    return batch
