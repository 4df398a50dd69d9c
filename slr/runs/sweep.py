"""The Hydra callback that keeps a sweep's table and failures visible while the sweep runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from slr.runs.aggregate import aggregate, find_runs
from slr.runs.status import STATUS_FILE

log = logging.getLogger(__name__)


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
        runs = find_runs(sweep_dir) if sweep_dir.is_dir() else []
        if runs:
            aggregate(sweep_dir)
        return runs
