"""Evaluate a checkpoint on the test split: `python -m slr.test ckpt_path=PATH [data overrides]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from slr.models.checkpoint import load_checkpoint
from slr.runs import record_data, to_builtin, write_json

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    """Test `cfg.ckpt_path` on `cfg.data`'s test split; write test_metrics.json; return metrics."""
    run_dir = Path(cfg.paths.output_dir)
    module = load_checkpoint(cfg.ckpt_path)
    with open_dict(cfg):
        for key, value in module.hparams.preprocessing.items():
            if key in cfg.data and cfg.data[key] is None:
                cfg.data[key] = value
    datamodule = instantiate(cfg.data)
    datamodule.use_encoder(module.net.encoder)
    datamodule.prepare_data()
    if datamodule.glosses != module.hparams.glosses:
        raise ValueError(
            f"{cfg.ckpt_path} was trained on {len(module.hparams.glosses)} glosses, but data "
            f"(root={cfg.data.root}, subset={cfg.data.subset}) has {datamodule.num_classes} "
            "or a different order; test on the data it was trained on"
        )
    data_counts = record_data(datamodule, run_dir)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    (results,) = trainer.test(module, datamodule=datamodule)
    metrics = {**to_builtin(results), "ckpt_path": str(cfg.ckpt_path), "videos": data_counts}
    write_json(run_dir / "test_metrics.json", metrics)
    test = data_counts["test"]
    log.info(
        "test: top-1 %.2f%%, top-5 %.2f%% per instance; top-1 %.2f%%, top-5 %.2f%% per class; "
        "%d videos evaluated of %d (%d missing, %d failed to decode)",
        *(100 * metrics[f"test/{k}"] for k in ("top1", "top5", "top1_class", "top5_class")),
        metrics["test/videos"],
        test["nominal"],
        test["missing"],
        metrics["test/skipped"],
    )
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="test")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
