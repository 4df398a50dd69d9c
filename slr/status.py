"""status.json: a run's state (running, done, failed with its error), kept current as it goes, so a
sweep shows a failed or stalled run before the sweep ends."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from slr.runs import to_builtin, write_json

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
VAL_KEYS = ("val/top1", "val/top5", "val/top1_class", "val/top5_class", "val/videos")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunStatus:
    """Writes `run_dir/status.json` at each change. Only one process of a distributed run
    writes (`enabled`); the others keep the same state silently.

    Args:
        run_dir: the run directory.
        enabled: whether this process writes (global rank 0).
    """

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / STATUS_FILE
        self.enabled = enabled
        self.start = time.perf_counter()
        self.earlier_s = 0.0  # wall time of the parts before a resume
        self.state: dict = {}

    def running(self, resumed_from: str | None = None) -> None:
        """A resumed run names its checkpoint and carries over the earlier part's wall time."""
        if resumed_from and self.path.is_file():
            self.earlier_s = json.loads(self.path.read_text()).get("wall_s") or 0.0
        self.state = {
            "status": "running",
            "started": _now(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "resumed_from": resumed_from,
            "epoch": None,
        }
        self.write()

    def progress(self, **values) -> None:
        """After each validation: the epoch reached and its val metrics."""
        self.state.update(to_builtin(values))
        self.write()

    def done(self, metrics: dict) -> None:
        self.state.update(status="done", finished=_now(), **{"val/top1": metrics.get("val/top1")})
        self.write()

    def failed(self, error: BaseException, reason: str | None = None) -> None:
        self.state.update(
            status="failed",
            finished=_now(),
            error=reason or f"{type(error).__name__}: {error}",
            traceback="".join(traceback.format_exception(error)),
        )
        self.write()

    @property
    def wall_s(self) -> float:
        return round(self.earlier_s + time.perf_counter() - self.start, 1)

    def write(self) -> None:
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, {**self.state, "updated": _now(), "wall_s": self.wall_s})


class BestEpoch(Callback):
    """Keeps the val metrics of the best epoch by `val/top1` (the first of equals, as
    ModelCheckpoint keeps it), and reports each epoch's to the run status."""

    def __init__(self, status: RunStatus | None = None) -> None:
        self.status = status
        self.best: dict = {}

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # not on_validation_epoch_end: callbacks run that hook before the module logs its metrics
        if trainer.sanity_checking:
            return
        now = {k: trainer.callback_metrics[k] for k in VAL_KEYS if k in trainer.callback_metrics}
        now = to_builtin({**now, "epoch": trainer.current_epoch})
        if now.get("val/top1") is not None and (
            not self.best or now["val/top1"] > self.best["val/top1"]
        ):
            self.best = now
        if self.status is not None:
            self.status.progress(**now, best_epoch=self.best.get("epoch"))

    def state_dict(self) -> dict:
        return {"best": self.best}  # saved in checkpoints, so a resumed run keeps its best epoch

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict["best"]


class SweepReport(HydraCallback):
    """Hydra callback (hydra.callbacks in train.yaml): names each failed run as soon as it ends and
    rewrites the sweep's table (slr.aggregate) after every run, so the table is there even when
    a failed run makes Hydra end the sweep with an error (Hydra's sweepers go on after a failed
    job and raise once the batch is done, skipping on_multirun_end). When a sweep ends it counts
    its runs from their status.json files, which works for launchers that run jobs elsewhere
    (SLURM) too."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs) -> None:
        if job_return.status != JobStatus.COMPLETED:
            status = Path(config.hydra.runtime.output_dir) / STATUS_FILE
            error = json.loads(status.read_text()).get("error") if status.is_file() else None
            overrides = " ".join(job_return.overrides or [])
            log.error("run failed: %s (%s); details in %s", overrides, error, status)
        # DDP's extra processes re-run the job in RUN mode; under SLURM every task ends the job
        if config.hydra.mode == RunMode.MULTIRUN and rank_zero_only.rank == 0:
            try:
                self.write_table(Path(config.hydra.sweep.dir))
            except (OSError, ValueError) as e:  # a table is never worth failing a run for
                log.warning("sweep table not written: %s", e)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        runs = self.write_table(Path(config.hydra.sweep.dir))
        if runs:
            counts: dict[str, int] = {}
            for run in runs:
                counts[run.status] = counts.get(run.status, 0) + 1
            log.info(
                "%d runs: %s; table in %s",
                len(runs),
                ", ".join(f"{n} {s}" for s, n in counts.items()),
                Path(config.hydra.sweep.dir) / "aggregate.md",
            )

    @staticmethod
    def write_table(sweep_dir: Path) -> list:
        """aggregate.md/.csv of the runs under sweep_dir (if any); returns the runs."""
        from slr.aggregate import aggregate, find_runs

        runs = find_runs(sweep_dir) if sweep_dir.is_dir() else []
        if runs:
            aggregate(sweep_dir)
        return runs
