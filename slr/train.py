"""Train a sign classifier, then test its best checkpoint: `python -m slr.train [overrides]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from slr.models.module import SignLitModule
from slr.runs import record_data, to_builtin, write_json

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list:
    """Callbacks or loggers: one `_target_` per entry of a config group."""
    return [instantiate(c) for c in (group or {}).values() if c is not None]


def train(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint, write metrics.json into the run directory; return metrics."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    data_counts = record_data(datamodule, run_dir)

    net_config = {
        **OmegaConf.to_container(cfg.model, resolve=True),
        "num_classes": datamodule.num_classes,
    }
    scheduler = cfg.get("scheduler")
    net = instantiate(net_config)
    datamodule.use_encoder(net.encoder)
    module = SignLitModule(
        net=net,
        glosses=datamodule.glosses,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(scheduler) if scheduler else None,
        label_smoothing=cfg.label_smoothing,
        net_config=net_config,
        preprocessing=datamodule.preprocessing,
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_all(cfg.get("callbacks")),
        logger=instantiate_all(cfg.get("logger")) or False,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint else ""
    metrics = {
        "val/top1": checkpoint.best_model_score
        if checkpoint
        else trainer.callback_metrics.get("val/top1"),
        "best_ckpt": best or None,
    }
    if cfg.get("test"):
        (results,) = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(results)
    metrics = {**to_builtin(metrics), "videos": data_counts}
    write_json(run_dir / "metrics.json", metrics)
    log.info("metrics written to %s", run_dir / "metrics.json")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get("val/top1")  # the value a Hydra sweeper optimizes


if __name__ == "__main__":
    main()
