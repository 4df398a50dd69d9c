"""Evaluate a checkpoint on the test split and write its report:
`python -m slr.test ckpt_path=PATH [data overrides] [test.num_views=N] [model.backbone.*=...]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from slr.evaluation.evaluate import SPLITS, checkpoint_data, evaluate_split, trained_with
from slr.evaluation.plots import write_plots
from slr.evaluation.report import summary_table, write_per_gloss_csv
from slr.evaluation.signers import per_signer, signer_metrics, write_per_signer_csv
from slr.models.checkpoint import load_trained
from slr.runs.cli import model_overrides, quiet_known_warnings, require
from slr.runs.files import to_builtin, write_json
from slr.runs.records import record_data

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig, overrides: dict | None = None) -> dict:
    """Test `cfg.ckpt_path` on `cfg.data`'s test (or val) split; write test_metrics.json,
    per_gloss.csv and the plots into the run directory; return the metrics. `overrides`: the
    `model.*` settings given (see `load_trained`); None = this Hydra run's command line."""
    run_dir = Path(cfg.paths.output_dir)
    split, num_views = cfg.test.get("split", "test"), int(cfg.test.num_views)
    if split not in SPLITS:
        raise ValueError(f"test.split={split}: use one of {', '.join(SPLITS)}")
    if num_views < 1:
        raise ValueError(f"test.num_views={num_views}: use 1 or more windows per video")
    trained = load_trained(cfg.ckpt_path, model_overrides=model_overrides(cfg, overrides))
    data = checkpoint_data(cfg.data, trained)
    datamodule = instantiate(data)
    datamodule.use_encoder(trained.net.encoder.store_encoder())
    datamodule.prepare_data()
    if datamodule.glosses != trained.glosses:
        raise ValueError(
            f"{cfg.ckpt_path} was trained on {len(trained.glosses)} glosses, but data "
            f"(root={data.root}, subset={data.get('subset')}) has "
            f"{datamodule.num_classes} or a different order; test on the data it was trained on"
            + trained_with(trained.dataset)
        )
    data_counts = record_data(datamodule, run_dir)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    predictions, report = evaluate_split(trainer, trained.module, datamodule, split, num_views)

    write_per_gloss_csv(run_dir / "per_gloss.csv", report.per_gloss)
    files = write_plots(run_dir, report, trained.glosses, cfg.ckpt_path)
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
    quiet_known_warnings()
    require(cfg, "python -m slr.test ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt "
            "data.root=/data/wlasl (or experiment=demo)")  # fmt: skip
    evaluate(cfg)


if __name__ == "__main__":
    main()
