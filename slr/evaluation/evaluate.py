"""The one evaluation: a trained module over a split's videos -> video-level predictions and the
report. The test after training (slr.train) and slr.test both run it."""

from __future__ import annotations

import copy
import logging

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader

from slr.data.datamodule import WLASL_TARGET, WLASLDataModule
from slr.data.dataset import collate_clips
from slr.data.failures import MAX_FAILED_FRACTION, check_failures
from slr.evaluation.report import Predictions, Report, build_report
from slr.models.checkpoint import TrainedModel
from slr.models.module import SignLitModule

log = logging.getLogger(__name__)

SPLITS = ("test", "val")


def split_loader(
    datamodule: WLASLDataModule, split: str = "test", num_views: int = 1
) -> DataLoader:
    """The split, one window per video (live or cached, as data.features says) or `num_views`
    windows per video, always decoded live: a feature store holds one view of val and test."""
    if num_views == 1:
        datamodule.setup("test" if split == "test" else "validate")
        return datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    if datamodule.hparams.features == "cached":
        log.info("%d views per video: decoding the %s videos live (the store holds one view)",
                 num_views, split)  # fmt: skip
    h = datamodule.hparams
    return DataLoader(
        datamodule.dataset(split, num_views=num_views),
        batch_size=h.batch_size,
        num_workers=h.num_workers,
        collate_fn=collate_clips,
    )


def evaluate_split(
    trainer: pl.Trainer,
    module: SignLitModule,
    datamodule: WLASLDataModule,
    split: str = "test",
    num_views: int = 1,
    ckpt_path: str | None = None,
) -> tuple[Predictions, Report]:
    """Predict every video of `split` (with `ckpt_path`'s weights if given), check how many failed
    to decode against data.max_failed_fraction, and build the report. Under DDP every process
    predicts its share and every process gets all of them."""
    if split not in SPLITS:
        raise ValueError(f"split={split}: use one of {SPLITS}")
    if num_views < 1:
        raise ValueError(f"num_views={num_views}: use 1 or more windows per video")
    loader = split_loader(datamodule, split, num_views)
    outputs = trainer.predict(module, dataloaders=loader, ckpt_path=ckpt_path)
    predictions = Predictions.gather(all_ranks(outputs, trainer), len(datamodule.glosses))
    total = len(predictions.video_ids) + len(predictions.errors)
    max_failed = datamodule.hparams.get("max_failed_fraction", MAX_FAILED_FRACTION)
    check_failures(split, predictions.errors, total, max_failed)
    return predictions, build_report(predictions, datamodule.glosses, num_views)


def all_ranks(outputs: list[dict], trainer: pl.Trainer) -> list[dict]:
    """Every process's predict outputs, each video once: the distributed sampler pads the last
    shares with repeated videos so that all processes get as many."""
    if trainer.world_size == 1:
        return outputs
    shares: list[list[dict]] = [[] for _ in range(trainer.world_size)]
    torch.distributed.all_gather_object(shares, outputs)
    seen: set[str] = set()
    merged = []
    for share in shares:
        for out in share:
            keep = [i for i, v in enumerate(out["video_id"]) if v not in seen]
            errors = {k: e for k, e in out["errors"].items() if k not in seen}
            seen.update(out["video_id"][i] for i in keep)
            seen.update(errors)
            if "probs" in out:
                out = {**out, "label": out["label"][keep], "probs": out["probs"][keep]}
            merged.append({**out, "video_id": [out["video_id"][i] for i in keep], "errors": errors})
    return merged


def checkpoint_data(data: DictConfig, trained: TrainedModel) -> DictConfig:
    """A copy of `data` completed from the checkpoint (the given config is left as it is):
    - frames, size and crop margin left null take the checkpoint's preprocessing;
    - left at WLASL (the default), it becomes the reader the checkpoint was trained with, and
      that reader's recorded settings (CSV file, split seed, ...): then data.root is all
      slr.test needs;
    - any other reader takes the checkpoint's glosses as its label order, so a test video of a
      gloss the model never learnt is counted as unknown instead of shifting every label."""
    data = copy.deepcopy(data)
    record = trained.dataset
    with open_dict(data):
        for key, value in trained.preprocessing.to_dict().items():
            if key in data and data[key] is None:
                data[key] = value
        if record and data._target_ == WLASL_TARGET and record["_target_"] != WLASL_TARGET:
            log.info("data: %s with the checkpoint's settings",
                     record["_target_"].rsplit(".", 1)[-1])  # fmt: skip
            data.subset, data.split_file = None, None  # WLASL's keys, refused by other readers
            for key, value in record.items():
                data[key] = value
        if data._target_ != WLASL_TARGET and "glosses" in data:
            data.glosses = list(trained.glosses)
    return data


def trained_with(record: dict | None) -> str:
    """ " (it was trained with data.subset=300 ...)" from the checkpoint's record, if any."""
    if not record:
        return ""
    settings = " ".join(f"data.{k}={v}" for k, v in record.items() if k != "_target_")
    return f" (it was trained with {settings})"
