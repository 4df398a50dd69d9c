"""What every run writes next to its results: data availability, gloss list, metrics JSON."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import torch

from slr.data.datamodule import WLASLDataModule

log = logging.getLogger(__name__)


def write_json(path: Path, obj: dict) -> None:
    """Write atomically, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def to_builtin(metrics: dict) -> dict:
    """Tensors and floats as plain JSON numbers (NaN as null)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        out[key] = value
    return out


def record_data(datamodule: WLASLDataModule, run_dir: Path) -> dict:
    """Log "available X of Y" per split, write the missing ids and the gloss list into the run
    directory, and return the counts for metrics.json."""
    report = datamodule.availability()
    for split, counts in report["splits"].items():
        log.info(
            "%s: available %d of %d videos (%d missing)",
            split,
            counts["available"],
            counts["nominal"],
            counts["missing"],
        )
    if report["unknown_split_ids"]:
        log.info("split file ids not in the index (skipped): %d", len(report["unknown_split_ids"]))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "missing_videos.json", report["missing_ids"])
    (run_dir / "glosses.txt").write_text("\n".join(datamodule.glosses) + "\n")
    return {**report["splits"], "unknown_split_ids": len(report["unknown_split_ids"])}
