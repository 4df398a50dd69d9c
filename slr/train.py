"""Train a sign classifier, then test its best checkpoint: `python -m slr.train [overrides]`."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from slr.data.failures import MAX_FAILED_FRACTION, ClipFailures
from slr.evaluation.evaluate import evaluate_split
from slr.models.metrics import MONITOR
from slr.models.module import SignLitModule
from slr.runs.best_epoch import BestEpoch
from slr.runs.cli import instantiate_all, instantiate_unwrapped, quiet_known_warnings
from slr.runs.ddp import own_process_group, single_run_argv
from slr.runs.files import to_builtin, write_json
from slr.runs.provenance import record_provenance
from slr.runs.records import record_data
from slr.runs.resume import (
    ALLOW_KEY,
    check_resume,
    finished_metrics,
    keep_csv_history,
    keep_earlier_values,
    keep_first_overrides,
    resolve_ckpt_path,
)
from slr.runs.rng import RngState
from slr.runs.status import RunStatus

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint, write metrics.json into the run directory; return metrics.
    status.json says running / done / failed (with the error) throughout."""
    run_dir = Path(cfg.paths.output_dir)
    # before the Trainer exists, the rank comes from the environment (DDP children, SLURM tasks)
    status = RunStatus(run_dir, enabled=rank_zero_only.rank == 0)
    resuming = cfg.get("ckpt_path") is not None
    if rank_zero_only.rank == 0:
        keep_first_overrides(run_dir, resuming)  # whatever comes of this part
    if resuming:  # checked before the status changes: a refused resume leaves the run as it was
        check_resume(cfg, run_dir)
        finished = finished_metrics(run_dir)
        if finished is not None and not cfg.get(ALLOW_KEY):
            log.info("%s finished already (status.json: done): nothing to resume", run_dir)
            return finished
    status.running(resumed_from=str(cfg.ckpt_path) if resuming else None)
    try:
        metrics = _fit_and_test(cfg, run_dir, status, resuming)
    except SIGTERMException as e:
        # Lightning's SystemExit carries no code, so a run that SLURM's time limit, `timeout` or
        # a container stop ended would exit 0 as if finished: exit 128 + 15 as a shell would
        status.failed(e, reason="terminated by SIGTERM; resume it with ckpt_path=last")
        raise SystemExit(128 + signal.SIGTERM) from e
    except BaseException as e:  # KeyboardInterrupt too: the status must not stay "running"
        status.failed(e)
        raise
    status.done(metrics)
    return metrics


def _fit_and_test(cfg: DictConfig, run_dir: Path, status: RunStatus, resuming: bool) -> dict:
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate_unwrapped(cfg.data)  # first: it refuses unusable data settings
    best_epoch = BestEpoch(status)
    failures = ClipFailures(datamodule.hparams.get("max_failed_fraction", MAX_FAILED_FRACTION))
    loggers = instantiate_all(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*instantiate_all(cfg.get("callbacks")), best_epoch, RngState(), failures],
        logger=loggers or False,
    )
    status.enabled = trainer.is_global_zero  # now known for every launcher
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), trainer)
    if ckpt_path:
        status.progress(resumed_from=ckpt_path)  # the file `last` stood for
    if trainer.is_global_zero:
        record_provenance(cfg, run_dir, resuming=resuming)
        if resuming:
            keep_csv_history(loggers)

    datamodule.prepare_data()
    # one process writes the run's files; the counts are the same on every rank
    data_counts = record_data(datamodule, run_dir) if trainer.is_global_zero else {}

    net_config = {
        **OmegaConf.to_container(cfg.model, resolve=True),
        "num_classes": datamodule.num_classes,
    }
    scheduler = cfg.get("scheduler")
    net = instantiate(net_config)
    datamodule.use_encoder(net.encoder.store_encoder())
    module = SignLitModule(
        net=net,
        glosses=datamodule.glosses,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(scheduler) if scheduler else None,
        label_smoothing=cfg.label_smoothing,
        mixup_alpha=cfg.get("mixup_alpha", 0.0),
        net_config=net_config,
        preprocessing=datamodule.preprocessing,
        dataset=datamodule.dataset_spec,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if trainer.received_sigterm:  # arrived where Lightning's loops do not check for it
        raise SIGTERMException(signal.SIGTERM)

    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint else ""
    val = dict(best_epoch.best)  # the best epoch's val metrics (by val/top1)
    best_index = val.pop("epoch", None)
    metrics = {
        MONITOR: None,  # stays None only if validation never ran
        **val,
        **{k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")},  # last
        "train/skipped": failures.skipped.get("train"),  # clips that failed to decode, last epoch
        "epochs": trainer.current_epoch,  # epochs completed (early stopping may end sooner)
        "best_epoch": best_index,
        "best_ckpt": best or None,
    }
    if cfg.get("test"):  # the same evaluation as slr.test, on the best epoch's weights
        _, report = evaluate_split(trainer, module, datamodule, "test", ckpt_path=best or None)
        if trainer.received_sigterm:
            raise SIGTERMException(signal.SIGTERM)
        metrics.update(report.metrics)
    metrics = {**to_builtin(metrics), "wall_s": status.wall_s, "videos": data_counts}
    if trainer.is_global_zero:
        if resuming:  # a part that trained no further epoch has no train/* values of its own
            metrics = keep_earlier_values(metrics, run_dir)
        write_json(run_dir / "metrics.json", metrics)
        log.info("metrics written to %s", run_dir / "metrics.json")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_known_warnings()
    single_run_argv()
    with own_process_group():
        metrics = train(cfg)
    return metrics.get(MONITOR)  # the value a Hydra sweeper optimizes


if __name__ == "__main__":
    main()
