"""Evaluate a checkpoint on the test split and write its report:
`python -m slr.test ckpt_path=PATH [data overrides] [test.num_views=N]`."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader

from slr.data.datamodule import WLASLDataModule
from slr.data.dataset import collate_clips
from slr.data.failures import MAX_FAILED_FRACTION, check_failures
from slr.evaluation import plots
from slr.evaluation.report import (
    Predictions,
    Report,
    build_report,
    summary_table,
    write_per_gloss_csv,
)
from slr.evaluation.signers import per_signer, signer_metrics, write_per_signer_csv
from slr.evaluation.views import MultiViewClips
from slr.models.checkpoint import load_checkpoint
from slr.runs import record_data, require, to_builtin, write_json

log = logging.getLogger(__name__)
WLASL_TARGET = f"{WLASLDataModule.__module__}.{WLASLDataModule.__qualname__}"
# raised inside Lightning's own loops (pytorch_lightning 2.6 with torch 2.14), not ours
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def make_test_loader(
    datamodule: WLASLDataModule, num_views: int, split: str = "test"
) -> DataLoader:
    """The split, one window per video (live or cached, as data.features says) or `num_views`
    windows per video, always decoded live: a feature store holds one view of val and test."""
    if num_views == 1:
        datamodule.setup("test" if split == "test" else "validate")
        return datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    if datamodule.hparams.features == "cached":
        log.info("test.num_views=%d: decoding the %s videos live (the store holds one view)",
                 num_views, split)  # fmt: skip
    h = datamodule.hparams
    return DataLoader(
        MultiViewClips(datamodule.dataset(split), num_views),
        batch_size=h.batch_size,
        num_workers=h.num_workers,
        collate_fn=collate_clips,
    )


def use_checkpoint_data(data: DictConfig, hparams: dict) -> None:
    """Left at WLASL (the default), `data` becomes the reader the checkpoint was trained with, and
    its recorded settings (CSV file, split seed, ...): then data.root is all slr.test needs. Any
    other reader takes the checkpoint's glosses as its label order, so a test video of a gloss
    the model never learnt is counted as unknown instead of shifting every label."""
    record = hparams.get("dataset")
    if record and data._target_ == WLASL_TARGET and record["_target_"] != WLASL_TARGET:
        log.info("data: %s with the checkpoint's settings", record["_target_"].rsplit(".", 1)[-1])
        data.subset, data.split_file = None, None  # WLASL's keys, refused by the other readers
        for key, value in record.items():
            data[key] = value
    if data._target_ != WLASL_TARGET and "glosses" in data:
        data.glosses = list(hparams["glosses"])


def _trained_with(record: dict | None) -> str:
    """ " (it was trained with data.subset=300 ...)" from the checkpoint's record, if any."""
    if not record:
        return ""
    settings = " ".join(f"data.{k}={v}" for k, v in record.items() if k != "_target_")
    return f" (it was trained with {settings})"


def write_plots(run_dir: Path, report: Report, glosses: list[str], ckpt_path: str) -> dict:
    """The PNGs that can be drawn, and for each one that cannot, why."""
    written, skipped = [], {}
    names = ("confusion_matrix.png", "per_class_accuracy.png", "training_curves.png")
    reason = plots.plots_unavailable()
    if reason:
        log.warning("plots skipped: %s", reason)
        return {"plots": [], "plots_skipped": dict.fromkeys(names, reason)}
    plots.plot_confusion(run_dir / names[0], report.confusion, glosses)
    plots.plot_per_class(
        run_dir / names[1],
        report.per_class_top1,
        report.per_class_top5,
        glosses,
        report.metrics["test/chance_top1"],
    )
    written += names[:2]
    # the checkpoint sits in RUN/checkpoints/, the training log in RUN/csv/metrics.csv
    train_log = Path(ckpt_path).resolve().parent.parent / "csv" / "metrics.csv"
    series = plots.read_epoch_metrics(train_log) if train_log.is_file() else {}
    if series:
        plots.plot_training_curves(run_dir / names[2], series)
        written.append(names[2])
    else:
        skipped[names[2]] = f"no per-epoch training log at {train_log}"
        log.warning("training curves skipped: no per-epoch training log at %s", train_log)
    return {"plots": written, "plots_skipped": skipped}


def evaluate(cfg: DictConfig) -> dict:
    """Test `cfg.ckpt_path` on `cfg.data`'s test split; write test_metrics.json, per_gloss.csv and
    the plots into the run directory; return the metrics."""
    run_dir = Path(cfg.paths.output_dir)
    num_views = int(cfg.test.num_views)
    if num_views < 1:
        raise ValueError(f"test.num_views={num_views}: use 1 or more windows per video")
    split = cfg.test.get("split", "test")
    if split not in ("test", "val"):
        raise ValueError(f"test.split={split}: use test or val")
    module = load_checkpoint(cfg.ckpt_path)
    with open_dict(cfg):
        for key, value in module.hparams.preprocessing.items():
            if key in cfg.data and cfg.data[key] is None:
                cfg.data[key] = value
        use_checkpoint_data(cfg.data, module.hparams)
    datamodule = instantiate(cfg.data)
    datamodule.use_encoder(module.net.encoder)
    datamodule.prepare_data()
    glosses = module.hparams.glosses
    if datamodule.glosses != glosses:
        raise ValueError(
            f"{cfg.ckpt_path} was trained on {len(glosses)} glosses, but data "
            f"(root={cfg.data.root}, subset={cfg.data.subset}) has {datamodule.num_classes} "
            "or a different order; test on the data it was trained on"
            + _trained_with(module.hparams.get("dataset"))
        )
    data_counts = record_data(datamodule, run_dir)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    if trainer.world_size > 1:  # predict() would return each process's share of the videos only
        raise ValueError(
            f"slr.test evaluates on one device; got {trainer.world_size} processes "
            "(set trainer.devices=1 trainer.num_nodes=1)"
        )
    outputs = trainer.predict(module, dataloaders=make_test_loader(datamodule, num_views, split))
    predictions = Predictions.gather(outputs, len(glosses))
    total = len(predictions.video_ids) + len(predictions.errors)
    max_failed = datamodule.hparams.get("max_failed_fraction", MAX_FAILED_FRACTION)
    check_failures("test", predictions.errors, total, max_failed)
    report = build_report(predictions, glosses, num_views)

    write_per_gloss_csv(run_dir / "per_gloss.csv", report.per_gloss)
    files = write_plots(run_dir, report, glosses, cfg.ckpt_path)
    signers = per_signer(predictions, {i.video_id: i.signer for i in datamodule.available[split]})
    if signers:  # the dataset names its signers (ASL Citizen, a CSV with a signer column)
        write_per_signer_csv(run_dir / "per_signer.csv", signers)
        files = {"per_signer_csv": "per_signer.csv", **files}
    metrics = {
        **to_builtin(report.metrics),
        **signer_metrics(signers),
        "test/split": split,
        "ckpt_path": str(cfg.ckpt_path),
        "videos": data_counts,
        "classes_without_videos": report.glosses_without_videos,
        "failed_videos": predictions.errors,
        "report": {"per_gloss_csv": "per_gloss.csv", **files},
    }
    write_json(run_dir / "test_metrics.json", metrics)
    log.info("%s split:\n%s", split, summary_table(report, data_counts[split]))
    if signers:
        worst = min(signers, key=lambda r: r["top1"])
        log.info("per signer (%d signers, per_signer.csv): top-1 mean %.2f%%, worst %.2f%% (%s)",
                 len(signers), 100 * metrics["test/top1_signer_mean"], 100 * worst["top1"],
                 worst["signer"])  # fmt: skip
    log.info("report written to %s", run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="test")
def main(cfg: DictConfig) -> None:
    require(cfg, "python -m slr.test ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt "
            "data.root=/data/wlasl (or experiment=demo)")  # fmt: skip
    evaluate(cfg)


if __name__ == "__main__":
    main()
