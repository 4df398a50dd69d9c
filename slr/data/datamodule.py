"""LightningDataModule over a WLASL-layout folder: ROOT/WLASL_v0.3.json + ROOT/videos/<id>.mp4."""

from __future__ import annotations

import copy
import logging
from functools import cached_property
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import nn
from torch.utils.data import DataLoader, Dataset

from slr.data.dataset import ClipDataset, collate_clips
from slr.data.demo import ensure_demo_dataset
from slr.data.failures import MAX_FAILED_FRACTION, check_data_settings, check_failures
from slr.data.features import FeatureDataset, build_store, module_digest
from slr.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform
from slr.data.video import TRUNCATED
from slr.data.wlasl import INDEX_FILE, SPLITS, VIDEO_DIR, Instance, SubsetIndex, read_subset

log = logging.getLogger(__name__)


class WLASLDataModule(pl.LightningDataModule):
    """Train/val/test loaders for one WLASL subset. Videos missing from ROOT/videos are the normal
    case (many WLASL links are dead): they are counted per split and left out.

    Args:
        root: dataset folder holding WLASL_v0.3.json and videos/.
        subset: 100 | 300 | 1000 | 2000, the first N glosses of the index; None = all glosses.
        split_file: an official nslt_N.json, absolute or relative to root; None = index splits.
        num_frames: frames per clip (T).
        image_size: side of the square frames fed to the backbone.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
        bbox_margin, crop_scale, color_jitter, hflip_p: see `ClipTransform`.
        trimmed: videos are already cut to their frame range (official preprocessing, slr.prepare).
        truncated: a video whose frames stop well before the count its file lists: "skip" it
            (counted as failed) or "use" the frames that decode; warned either way.
        features: "live" decodes video and runs the backbone every epoch; "cached" runs them once
            per clip and view and stores the backbone's features on disk (see `use_encoder`).
        cache_dir: where feature stores live; None = ROOT/features.
        cache_views: augmented views cached per training clip (one is drawn per epoch); val and
            test cache their one fixed view.
        make_demo: write the synthetic demo dataset into root if it has no index yet.
        max_failed_fraction: the largest share of a split's clips that may fail to decode; more
            (or no usable clip at all) stops the run (see `slr.data.failures`).
    """

    def __init__(
        self,
        root: str,
        subset: int | None = 100,
        split_file: str | None = None,
        num_frames: int = 30,
        image_size: int = 224,
        batch_size: int = 8,
        num_workers: int = 2,
        bbox_margin: float = 0.15,
        crop_scale: tuple[float, float] = (0.7, 1.0),
        color_jitter: float = 0.2,
        hflip_p: float = 0.0,
        trimmed: bool = True,
        truncated: str = "skip",
        features: str = "live",
        cache_dir: str | None = None,
        cache_views: int = 4,
        make_demo: bool = False,
        max_failed_fraction: float = MAX_FAILED_FRACTION,
    ) -> None:
        super().__init__()
        if features not in ("live", "cached"):
            raise ValueError(f"data.features={features!r}: use 'live' or 'cached'")
        if truncated not in TRUNCATED:
            raise ValueError(f"data.truncated={truncated!r}: use one of {TRUNCATED}")
        check_data_settings(
            num_frames, image_size, batch_size, num_workers, cache_views, bbox_margin,
            crop_scale, color_jitter, hflip_p, max_failed_fraction,
        )  # fmt: skip
        self.save_hyperparameters(logger=False)
        self.root = Path(root)
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / "features"
        self.clips: dict[str, ClipDataset] = {}
        self.datasets: dict[str, Dataset] = {}
        self.encoder: nn.Module | None = None

    def use_encoder(self, encoder: nn.Module) -> None:
        """The frozen backbone that fills feature stores when data.features=cached."""
        self.encoder = encoder

    def prepare_data(self) -> None:
        if self.hparams.make_demo:
            ensure_demo_dataset(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(
                f"data.root={self.root} is a file, not a folder. Point data.root at the folder "
                f"holding {INDEX_FILE} and {VIDEO_DIR}/ (for one video, use slr.predict input=)."
            )
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.root={self.root} does not exist. Point data.root at a folder holding "
                f"{INDEX_FILE} and {VIDEO_DIR}/<video_id>.mp4 (or use experiment=demo)."
            )

    @cached_property
    def index(self) -> SubsetIndex:
        split_file = self.hparams.split_file
        if split_file is not None and not Path(split_file).is_absolute():
            split_file = self.root / split_file
        return read_subset(self.root / INDEX_FILE, self.hparams.subset, split_file)

    @property
    def glosses(self) -> list[str]:
        """Gloss names in label order."""
        return self.index.glosses

    @property
    def num_classes(self) -> int:
        return len(self.index.glosses)

    @property
    def preprocessing(self) -> dict:
        """What a model trained on this data expects as input; saved with every checkpoint."""
        h = self.hparams
        return {
            "num_frames": h.num_frames,
            "image_size": h.image_size,
            "bbox_margin": h.bbox_margin,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }

    @cached_property
    def available(self) -> dict[str, list[Instance]]:
        """Per split, the instances whose video file exists."""
        video_dir = self.root / VIDEO_DIR
        return {
            split: [i for i in insts if (video_dir / f"{i.video_id}.mp4").is_file()]
            for split, insts in self.index.splits.items()
        }

    def availability(self) -> dict:
        """Nominal, available and missing video counts per split, plus the missing ids."""
        report: dict = {
            "splits": {},
            "missing_ids": {},
            "unknown_split_ids": self.index.unknown_ids,
        }
        for split in SPLITS:
            have = {i.video_id for i in self.available[split]}
            missing = [i.video_id for i in self.index.splits[split] if i.video_id not in have]
            report["splits"][split] = {
                "nominal": len(self.index.splits[split]),
                "available": len(have),
                "missing": len(missing),
            }
            report["missing_ids"][split] = missing
        return report

    def dataset(self, split: str) -> ClipDataset:
        """The split's clips, decoded from video."""
        if split not in self.clips:
            insts = self.available[split]
            if not insts:
                raise RuntimeError(
                    f"no {split} videos available under {self.root / VIDEO_DIR} "
                    f"({len(self.index.splits[split])} listed for this subset)"
                )
            h = self.hparams
            transform = ClipTransform(
                image_size=h.image_size,
                train=split == "train",
                bbox_margin=h.bbox_margin,
                crop_scale=tuple(h.crop_scale),
                color_jitter=h.color_jitter,
                hflip_p=h.hflip_p,
            )
            video_dir = self.root / VIDEO_DIR
            self.clips[split] = ClipDataset(
                insts, video_dir, h.num_frames, transform, h.trimmed, h.truncated
            )
        return self.clips[split]

    def cached(self, split: str) -> FeatureDataset:
        """The split as cached backbone features, extracting them first where absent."""
        if self.encoder is None:
            raise RuntimeError("data.features=cached needs the backbone: call use_encoder() first")
        clips, h = self.dataset(split), self.hparams
        views = h.cache_views if split == "train" else 1
        store = build_store(
            clips,
            _on_fastest_device(self.encoder),
            module_digest(self.encoder),
            self.cache_dir,
            views=views,
            batch_size=h.batch_size,
            num_workers=h.num_workers,
            desc=f"caching {split} features",
        )
        # the failures are known now: a split that is (nearly) all failures stops before training
        check_failures(split, store.failed, len(clips), h.max_failed_fraction)
        return FeatureDataset(store, clips, train=split == "train")

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}
        for split in needed.get(stage, SPLITS):
            if split not in self.datasets:
                cached = self.hparams.features == "cached"
                self.datasets[split] = self.cached(split) if cached else self.dataset(split)

    def _loader(self, split: str) -> DataLoader:
        # cached features are a memory-mapped read: worker processes would only add start-up
        workers = 0 if self.hparams.features == "cached" else self.hparams.num_workers
        sampler = None
        if split != "train" and self.trainer is not None and self.trainer.world_size > 1:
            # Lightning's DistributedSampler pads val/test with repeated videos to equal shares;
            # this one splits them without repeats, so each video is counted exactly once
            sampler = UnrepeatedDistributedSampler(
                self.datasets[split],
                num_replicas=self.trainer.world_size,
                rank=self.trainer.global_rank,
                shuffle=False,
            )
        return DataLoader(
            self.datasets[split],
            batch_size=self.hparams.batch_size,
            shuffle=split == "train",
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_clips,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def _on_fastest_device(encoder: nn.Module):
    """The encoder as a function of CPU tensors, run on a GPU when there is one (a copy, so the
    model Lightning manages stays where it is)."""
    if not torch.cuda.is_available():
        return encoder
    gpu = copy.deepcopy(encoder).cuda()
    return lambda frames, lengths: gpu(frames.cuda(non_blocking=True), lengths.cuda()).cpu()
