"""Train a sign classifier, then test its best checkpoint: `python -m slr.train [overrides]`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, read_write
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from slr.data.failures import MAX_FAILED_FRACTION, ClipFailures
from slr.models.checkpoint import check_checkpoint_file
from slr.models.module import SignLitModule
from slr.provenance import record_provenance
from slr.resume import (
    ALLOW_KEY,
    check_resume,
    finished_metrics,
    keep_earlier_values,
    keep_first_overrides,
)
from slr.rng_state import RngState
from slr.runs import record_data, to_builtin, write_json
from slr.status import BestEpoch, RunStatus

log = logging.getLogger(__name__)

# what Lightning's DDP launcher sets in the launching process (OMP_NUM_THREADS along with
# torch.set_num_threads: the cores shared out between the job's processes)
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")

# Under DDP Lightning suggests sync_dist=True for every epoch-level value; ours are torchmetrics
# objects whose compute() already syncs across processes, so a second reduction adds nothing.
warnings.filterwarnings(
    "ignore", message=r"It is recommended to use `self.log\(", category=UserWarning
)


def instantiate_all(group: DictConfig | None) -> list:
    """Callbacks or loggers: one `_target_` per entry of a config group."""
    return [instantiate(c) for c in (group or {}).values() if c is not None]


def instantiate_unwrapped(node: DictConfig):
    """instantiate(), raising a constructor's own ValueError (which names the setting) rather
    than Hydra's InstantiationException around it."""
    try:
        return instantiate(node)
    except InstantiationException as e:
        if isinstance(e.__cause__, ValueError):
            raise e.__cause__ from None
        raise


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
    datamodule.use_encoder(net.encoder)
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
        "val/top1": None,  # stays None only if validation never ran
        **val,
        **{k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")},  # last
        "train/skipped": failures.skipped.get("train"),  # clips that failed to decode, last epoch
        "epochs": trainer.current_epoch,  # epochs completed (early stopping may end sooner)
        "best_epoch": best_index,
        "best_ckpt": best or None,
    }
    if cfg.get("test"):
        (results,) = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        if trainer.received_sigterm:
            raise SIGTERMException(signal.SIGTERM)
        metrics.update(results)
    metrics = {**to_builtin(metrics), "wall_s": status.wall_s, "videos": data_counts}
    if trainer.is_global_zero:
        if resuming:  # a part that trained no further epoch has no train/* values of its own
            metrics = keep_earlier_values(metrics, run_dir)
        write_json(run_dir / "metrics.json", metrics)
        log.info("metrics written to %s", run_dir / "metrics.json")
    return metrics


def resolve_ckpt_path(ckpt_path: str | None, trainer: pl.Trainer) -> str | None:
    """`ckpt_path=last` is this run directory's checkpoints/last.ckpt (resume a run with
    `hydra.run.dir=RUN_DIR ckpt_path=last`); anything else is a checkpoint file."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        dirs = [c.dirpath for c in trainer.checkpoint_callbacks if c.dirpath]
        if not dirs:
            raise ValueError("ckpt_path=last needs the checkpoint callbacks (callbacks=default)")
        path = Path(dirs[-1]) / "last.ckpt"  # callbacks/default.yaml's last_checkpoint
        hint = "set hydra.run.dir to the interrupted run's directory, or ckpt_path to a file"
    else:
        path = Path(ckpt_path)
        hint = "check ckpt_path"
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no checkpoint at {path}; {hint}")
    check_checkpoint_file(path)  # Lightning's own error for a damaged file names neither
    log.info("resuming from %s", path)
    return str(path)


def keep_csv_history(loggers: list) -> None:
    """CSVLogger deletes an existing metrics.csv when it starts; on resume, keep the earlier
    epochs by moving that file aside (metrics.part1.csv, part2, ...)."""
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            current = Path(logger.log_dir) / "metrics.csv"
            if current.is_file():
                n = 1
                while (part := current.with_name(f"metrics.part{n}.csv")).exists():
                    n += 1
                current.rename(part)
                log.info("earlier epochs' metrics kept in %s", part)


def single_run_argv() -> None:
    """Lightning's DDP launcher starts ranks 1..N-1 by re-running sys.argv in hydra.run.dir. In a
    multirun that command would start the whole sweep again in a wrong directory, so make it this
    job's own command: its overrides, and its directory as run.dir."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hparams_search=")]
    sys.argv = [sys.argv[0], *config_flags(sys.argv[1:]), *overrides]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")


def config_flags(argv: list[str]) -> list[str]:
    """Hydra's options that say where the config comes from (`-cd DIR`, `--config-name=X`): a
    job's own command needs them too, or its other ranks compose another config."""
    keep, args = [], iter(argv)
    for arg in args:
        if arg in CONFIG_FLAGS:
            keep += [arg, next(args, "")]
        elif arg.split("=", 1)[0] in CONFIG_FLAGS:
            keep.append(arg)
    return keep


@contextmanager
def own_process_group():
    """A local sweep runs its jobs one after another in one process. Lightning's DDP launcher
    leaves its process group and its variables (LOCAL_RANK=0, MASTER_PORT, ...) behind, and the
    next job would take them as "launched externally" and wait for ranks it never starts: undo
    both after each job."""
    before = {k: os.environ.get(k) for k in DDP_ENV}
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    single_run_argv()
    with own_process_group():
        metrics = train(cfg)
    return metrics.get("val/top1")  # the value a Hydra sweeper optimizes


if __name__ == "__main__":
    main()
