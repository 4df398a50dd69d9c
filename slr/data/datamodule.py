"""LightningDataModule over a dataset folder: WLASL's layout (ROOT/WLASL_v0.3.json +
ROOT/videos/<id>.mp4) by default, ASL Citizen, a labelled CSV or a folder per gloss through the
subclasses at the end (each a `slr.data.readers` reader)."""

from __future__ import annotations

import copy
import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from slr.data.dataset import ClipDataset, collate_clips
from slr.data.failures import MAX_FAILED_FRACTION, check_data_settings, check_failures
from slr.data.feature_augment import FeatureAugment
from slr.data.features import FeatureDataset, build_store, module_digest
from slr.data.preprocessing import Preprocessing
from slr.data.readers.asl_citizen import ASLCitizenReader
from slr.data.readers.base import DatasetReader
from slr.data.readers.csv import CSVReader
from slr.data.readers.folders import FoldersReader
from slr.data.readers.wlasl import WLASLReader
from slr.data.transforms import ClipTransform
from slr.data.video import TRUNCATED
from slr.data.wlasl import SPLITS, Instance, SubsetIndex

log = logging.getLogger(__name__)


WLASL_TARGET = "slr.data.datamodule.WLASLDataModule"  # its `_target_`, as checkpoints record it


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
        make_demo: kept for configs of earlier versions; the demo data is written by `data=demo`
            (`slr.acquisition.demo.DemoDataModule`), so True is refused here.
        aug_speed, aug_crop, aug_frame_dropout: temporal augmentation of cached training
            features (see `FeatureAugment`); off by default.
        balanced: draw training clips with probability inversely proportional to their gloss's
            clip count (with replacement, as many per epoch as there are clips).
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
        aug_speed: tuple[float, float] = (1.0, 1.0),
        aug_crop: float = 1.0,
        aug_frame_dropout: float = 0.0,
        balanced: bool = False,
        max_failed_fraction: float = MAX_FAILED_FRACTION,
    ) -> None:
        super().__init__()
        if make_demo and type(self) is WLASLDataModule:
            raise ValueError(
                "data.make_demo=true: the demo dataset is written by data=demo (or experiment=demo)"
                ", whose datamodule is slr.acquisition.demo.DemoDataModule"
            )
        if features not in ("live", "cached"):
            raise ValueError(f"data.features={features!r}: use 'live' or 'cached'")
        self.augment = FeatureAugment(tuple(aug_speed), aug_crop, aug_frame_dropout)
        if self.augment.active and features != "cached":
            raise ValueError(
                "data.aug_speed/aug_crop/aug_frame_dropout augment cached features: set "
                "data.features=cached (live clips already sample their frames with jitter)"
            )
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
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(
                f"data.root={self.root} is a file, not a folder. Point data.root at "
                f"{self.reader.layout} (for one video, use slr.predict input=)."
            )
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.root={self.root} does not exist. Point data.root at "
                f"{self.reader.layout} (or use experiment=demo)."
            )

    # the hparams that say which data this is (beside root), saved with every checkpoint
    reader_keys: tuple[str, ...] = ("subset", "split_file")

    def make_reader(self) -> DatasetReader:
        return WLASLReader(self.root, self.hparams.subset, self.hparams.split_file)

    @cached_property
    def reader(self) -> DatasetReader:
        return self.make_reader()

    @property
    def dataset_spec(self) -> dict:
        """The datamodule class and reader settings, for checkpoints: with them `slr.test` on a
        checkpoint needs only data.root."""
        cls = type(self)
        spec = {k: self.hparams[k] for k in self.reader_keys}
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **spec}

    @cached_property
    def index(self) -> SubsetIndex:
        return self.reader.read()

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
        return Preprocessing(h.num_frames, h.image_size, h.bbox_margin).to_dict()

    @cached_property
    def available(self) -> dict[str, list[Instance]]:
        """Per split, the instances whose video file exists."""
        video_dir = self.reader.video_dir
        return {
            split: [i for i in insts if (video_dir / i.file()).is_file()]
            for split, insts in self.index.splits.items()
        }

    def availability(self) -> dict:
        """Nominal, available and missing video counts per split, plus the missing ids."""
        report: dict = {
            "splits": {},
            "missing_ids": {},
            "unknown_split_ids": self.index.unknown_ids,
            "problems": {k: v for k, v in self.index.problems.items() if v},
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

    def dataset(self, split: str, num_views: int = 1) -> ClipDataset:
        """The split's clips, decoded from video; `num_views` > 1 windows per video (evaluation
        splits only, see `ClipDataset`)."""
        if num_views > 1:
            one = self.dataset(split)
            return ClipDataset(
                one.instances, one.video_dir, one.num_frames, one.transform, one.trimmed,
                one.truncated, num_views,
            )  # fmt: skip
        if split not in self.clips:
            insts = self.available[split]
            if not insts:
                raise RuntimeError(
                    f"no {split} videos available under {self.reader.video_dir} "
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
            self.clips[split] = ClipDataset(
                insts, self.reader.video_dir, h.num_frames, transform, h.trimmed, h.truncated
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
        return FeatureDataset(store, clips, train=split == "train", augment=self.augment)

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
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if split == "train" and self.hparams.balanced:
            if world_size > 1:
                raise ValueError("data.balanced=true runs in one process only (no DDP sampler)")
            sampler = balanced_sampler([i.label for i in self.datasets[split].instances])
        elif split != "train" and world_size > 1:
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
            shuffle=split == "train" and sampler is None,
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


def balanced_sampler(labels: list[int]) -> WeightedRandomSampler:
    """Each clip drawn with probability 1 / (its gloss's clip count): every gloss equally often."""
    counts = torch.bincount(torch.tensor(labels))
    weights = 1.0 / counts[torch.tensor(labels)].double()  # (N,)
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True)


def _on_fastest_device(encoder: nn.Module):
    """The encoder as a function of CPU tensors, run on a GPU when there is one (a copy, so the
    model Lightning manages stays where it is)."""
    if not torch.cuda.is_available():
        return encoder
    gpu = copy.deepcopy(encoder).cuda()
    return lambda frames, lengths: gpu(frames.cuda(non_blocking=True), lengths.cuda()).cpu()


def _no_wlasl_settings(clip_args: dict, data: str) -> None:
    """data.subset and data.split_file select WLASL glosses and splits; elsewhere they would be
    silently ignored, so refuse them. Also: untrimmed by default."""
    given = [k for k in ("subset", "split_file") if clip_args.pop(k, None) is not None]
    # their files are whole recordings; any start/end is cut out when read (trimmed=True says
    # the files are already cut to it)
    clip_args.setdefault("trimmed", False)
    if given:
        raise ValueError(
            f"data.{' and data.'.join(given)} apply to WLASL only; data={data} takes its glosses "
            "and splits from its own files (set them to null)"
        )


class ASLCitizenDataModule(WLASLDataModule):
    """ASL Citizen's signer-disjoint splits: ROOT/splits/{train,val,test}.csv + ROOT/videos/.

    Args:
        root: the unzipped release.
        glosses: label order: a file of glosses, one per line (relative to root or absolute), or
            the list; None = the training split's glosses, sorted.
        **clip_args: as `WLASLDataModule` (num_frames, image_size, batch_size, features, ...).
    """

    reader_keys = ("glosses", "trimmed")

    def __init__(self, root: str, glosses: str | list[str] | None = None, **clip_args: Any) -> None:
        _no_wlasl_settings(clip_args, "asl_citizen")
        super().__init__(root, subset=None, split_file=None, **clip_args)

    def make_reader(self) -> DatasetReader:
        return ASLCitizenReader(self.root, self.hparams.glosses)


class CSVDataModule(WLASLDataModule):
    """The videos a CSV labels: path,gloss[,split][,start,end][,x1,y1,x2,y2][,signer].

    Args:
        root: the dataset folder; CSV paths are relative to it (or absolute).
        csv: the label file, relative to root or absolute.
        glosses: label order (see `ASLCitizenDataModule`).
        val_fraction, test_fraction, split_seed: the seeded stratified split for a CSV without
            a split column; slr.train writes it to the run's splits.csv.
        time_unit: "seconds" or "frames" for the start/end columns.
        frame_rate: the rate frames are counted at.
        **clip_args: as `WLASLDataModule`.
    """

    reader_keys = (
        "csv", "glosses", "val_fraction", "test_fraction", "split_seed", "time_unit",
        "frame_rate", "trimmed",
    )  # fmt: skip

    def __init__(
        self,
        root: str,
        csv: str,
        glosses: str | list[str] | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        time_unit: str = "seconds",
        frame_rate: float = 25.0,
        **clip_args: Any,
    ) -> None:
        _no_wlasl_settings(clip_args, "csv")
        super().__init__(root, subset=None, split_file=None, **clip_args)

    def make_reader(self) -> DatasetReader:
        h = self.hparams
        return CSVReader(
            self.root,
            h.csv,
            h.glosses,
            h.val_fraction,
            h.test_fraction,
            h.split_seed,
            h.time_unit,
            h.frame_rate,
        )


class FoldersDataModule(WLASLDataModule):
    """One folder of videos per gloss: ROOT/<gloss>/<clip>.mp4, with a seeded stratified split.

    Args:
        root: the dataset folder.
        glosses: label order (see `ASLCitizenDataModule`).
        val_fraction, test_fraction, split_seed: the split (written to the run's splits.csv).
        **clip_args: as `WLASLDataModule`.
    """

    reader_keys = ("glosses", "val_fraction", "test_fraction", "split_seed", "trimmed")

    def __init__(
        self,
        root: str,
        glosses: str | list[str] | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        **clip_args: Any,
    ) -> None:
        _no_wlasl_settings(clip_args, "folders")
        super().__init__(root, subset=None, split_file=None, **clip_args)

    def make_reader(self) -> DatasetReader:
        h = self.hparams
        return FoldersReader(self.root, h.glosses, h.val_fraction, h.test_fraction, h.split_seed)
