"""When failed clips make a run meaningless: data settings that no clip can satisfy are refused
before any work, and a split whose clips (nearly) all fail to decode stops the run, instead of a
run that used no data ending `done` with top-1 0.0."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

log = logging.getLogger(__name__)
MAX_FAILED_FRACTION = 0.1  # data.max_failed_fraction's default, also for data modules without it


class TooManyFailures(RuntimeError):
    """A split in which no clip, or more than the allowed share of clips, could be used."""


def check_data_settings(
    num_frames: int,
    image_size: int,
    batch_size: int,
    num_workers: int,
    cache_views: int,
    bbox_margin: float,
    crop_scale: Sequence[float],
    color_jitter: float,
    hflip_p: float,
    max_failed_fraction: float,
) -> None:
    """Raise ValueError naming the first `data.*` key whose value no run can use."""
    positive = {
        "num_frames": num_frames,
        "image_size": image_size,
        "batch_size": batch_size,
        "cache_views": cache_views,
    }
    for key, value in positive.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"data.{key}={value!r}: must be a whole number of at least 1")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"data.num_workers={num_workers!r}: must be 0 (no workers) or more")
    if bbox_margin < 0:
        raise ValueError(f"data.bbox_margin={bbox_margin}: must be 0 or more (a fraction)")
    if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(
            f"data.crop_scale={list(crop_scale)}: give [low, high] area fractions, "
            "0 < low <= high <= 1"
        )
    if color_jitter < 0:
        raise ValueError(f"data.color_jitter={color_jitter}: must be 0 (off) or more")
    if not 0 <= hflip_p <= 1:
        raise ValueError(f"data.hflip_p={hflip_p}: a probability, 0 to 1")
    if not 0 <= max_failed_fraction < 1:
        raise ValueError(
            f"data.max_failed_fraction={max_failed_fraction}: the share of a split's clips "
            "allowed to fail, 0 <= value < 1 (a run where every clip fails has no result)"
        )


def check_failures(
    split: str, failed: dict[str, str] | int, total: int, max_fraction: float
) -> None:
    """Raise TooManyFailures when no clip of `split` was usable, or more than `max_fraction` of
    its `total` clips failed. `failed`: the failed ids and errors, or just their number."""
    n = failed if isinstance(failed, int) else len(failed)
    if total == 0 or n == 0:
        return
    example = ""
    if isinstance(failed, dict):
        video_id, error = next(iter(failed.items()))
        example = f" (e.g. {video_id}: {error})"
    check = "check the files with `python -m slr.doctor check=full` and the data settings"
    if n >= total:
        raise TooManyFailures(
            f"no usable {split} clip: all {total} failed to decode{example}; {check}"
        )
    if n / total > max_fraction:
        raise TooManyFailures(
            f"{n} of {total} {split} clips ({n / total:.0%}) failed to decode{example}, more than "
            f"data.max_failed_fraction={max_fraction}; {check}, or raise "
            "data.max_failed_fraction to go on without them"
        )


class ClipFailures(Callback):
    """Counts each epoch's used and failed clips per stage (batches name their failed ids, see
    `collate_clips`) and stops the run at the end of an epoch with too many failures. `skipped`
    holds the last complete epoch's failed count per stage, for metrics.json.

    Args:
        max_fraction: the largest share of a split's clips that may fail (data.max_failed_fraction).
    """

    def __init__(self, max_fraction: float = MAX_FAILED_FRACTION) -> None:
        self.max_fraction = max_fraction
        self.counts: dict[str, list[int]] = {}
        self.errors: dict[str, dict[str, str]] = {}
        self.skipped: dict[str, int] = {}

    def _start(self, stage: str) -> None:
        self.counts[stage] = [0, 0]
        self.errors[stage] = {}

    def _batch(self, stage: str, batch: dict) -> None:
        if stage not in self.counts:
            self._start(stage)
        self.counts[stage][0] += len(batch["video_id"])
        self.counts[stage][1] += len(batch["skipped"])
        self.errors[stage].update(batch["errors"])

    def _end(self, trainer: pl.Trainer, stage: str) -> None:
        ok, failed = self.counts.get(stage, [0, 0])
        # every process sees its share of the split: the decision is on the whole
        ok, failed = trainer.strategy.reduce(torch.tensor([ok, failed]), reduce_op="sum").tolist()
        self.skipped[stage] = int(failed)
        errors = self.errors.get(stage) or int(failed)
        check_failures(stage, errors if failed else 0, int(ok + failed), self.max_fraction)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start("train")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batch("train", batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, "train")

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start("val")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._batch("val", batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:  # a few batches: not the split
            self._end(trainer, "val")
