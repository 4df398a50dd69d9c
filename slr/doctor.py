"""Health check of a dataset folder against its index:
`python -m slr.doctor data.root=ROOT [check=none|open|full]` (WLASL: every subset and split file),
or `python -m slr.doctor data=asl_citizen|csv|folders data.root=ROOT [data.csv=...]`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from slr.acquisition.health import scan, scan_reader, summary_lines
from slr.data.datamodule import WLASLDataModule
from slr.data.files import atomic_write_text

log = logging.getLogger(__name__)


def doctor(cfg: DictConfig) -> dict:
    """Scan data.root, log the table, write the JSON report to `output` and the run directory."""
    datamodule = instantiate(cfg.data)  # reads nothing yet: only to get its reader
    if type(datamodule) is WLASLDataModule:
        report = scan(cfg.data.root, check=cfg.check, workers=cfg.workers)
    else:
        report = scan_reader(datamodule.reader, check=cfg.check, workers=cfg.workers)
    log.info("data health (check=%s):\n%s", cfg.check, "\n".join(summary_lines(report)))
    text = json.dumps(report, indent=2) + "\n"
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "doctor.json", text)
    if cfg.get("output"):
        try:
            atomic_write_text(Path(cfg.output), text)
            log.info("report written to %s", cfg.output)
        except OSError as e:  # a read-only dataset folder, say
            log.warning("could not write %s (%s); the report is in %s", cfg.output, e, run_dir)
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="doctor")
def main(cfg: DictConfig) -> None:
    doctor(cfg)


if __name__ == "__main__":
    main()
