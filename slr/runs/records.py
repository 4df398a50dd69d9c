"""What every run writes next to its results: which data it had (available videos per split,
glosses without a video, the missing ids), the gloss list, and a seeded split as CSV."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from slr.data.datamodule import WLASL_TARGET, WLASLDataModule
from slr.data.readers.base import summarize
from slr.data.summary import split_summary, summary_lines
from slr.data.wlasl import SPLITS
from slr.runs.files import write_json

log = logging.getLogger(__name__)


def record_data(datamodule: WLASLDataModule, run_dir: Path) -> dict:
    """Log the data summary slr.doctor prints (available X of Y per split, glosses left without
    a video), write the missing ids and the gloss list into the run directory, and return the
    counts for metrics.json, so every reported number says which data it was computed on."""
    report = datamodule.availability()
    have = {i.video_id for split in datamodule.available.values() for i in split}
    health = split_summary(datamodule.index, lambda i: i.video_id in have)
    name = datamodule.reader.name(datamodule.index)
    lines = summary_lines({"protocols": {name: health}})
    log.info("data (%s):\n%s", datamodule.root, "\n".join(lines))
    empty = {s: g for s, g in health["classes_without_videos"].items() if g}
    if empty:  # a class with no test video changes what accuracy means: say it louder
        counts = ", ".join(f"{len(g)} in {s}" for s, g in empty.items())
        log.warning("glosses without a single video: %s (listed above)", counts)
    if report["unknown_split_ids"]:
        log.info("split file ids not in the index (skipped): %d", len(report["unknown_split_ids"]))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "missing_videos.json", report["missing_ids"])
    (run_dir / "glosses.txt").write_text("\n".join(datamodule.glosses) + "\n")
    counts = {
        **report["splits"],
        "unknown_split_ids": len(report["unknown_split_ids"]),
        "classes_without_videos": {s: len(g) for s, g in health["classes_without_videos"].items()},
    }
    spec = dict(datamodule.dataset_spec)
    target = spec.pop("_target_")
    counts["data"] = {"root": str(datamodule.root), **spec}
    if target != WLASL_TARGET:  # WLASL's record stays as it was
        counts["data"]["datamodule"] = target
    if report["problems"]:  # only other readers report these; their lists go beside the run
        log.warning("left out of the data: %s (listed in data_problems.json)",
                    summarize(report["problems"]))  # fmt: skip
        write_json(run_dir / "data_problems.json", report["problems"])
        counts["problems"] = {k: len(v) for k, v in report["problems"].items()}
    if datamodule.index.assigned_splits:
        write_split_csv(run_dir / "splits.csv", datamodule)
        log.info("seeded split written to %s (reuse it with data=csv data.csv=that file)",
                 run_dir / "splits.csv")  # fmt: skip
    return counts


SPLIT_COLUMNS = ("path", "gloss", "split", "start", "end", "x1", "y1", "x2", "y2", "signer")


def write_split_csv(path: Path, datamodule: WLASLDataModule) -> None:
    """Every labelled instance in the CSV reader's format (path relative to data.root, times in
    seconds), so `data=csv data.root=ROOT data.csv=path` reads back exactly this split."""
    root = datamodule.root.resolve()
    rows = []
    for split in SPLITS:
        for inst in datamodule.index.splits[split]:
            file = (datamodule.reader.video_dir / inst.file()).resolve()
            rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
            start, stop = inst.time_range()
            bbox = list(inst.bbox) if inst.bbox else ["", "", "", ""]
            start_s = f"{start:g}" if start else ""
            stop_s = "" if stop is None else f"{stop:g}"
            rows.append([rel, inst.gloss, split, start_s, stop_s, *bbox, inst.signer or ""])
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SPLIT_COLUMNS)
        writer.writerows(rows)
