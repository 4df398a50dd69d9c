"""Fill the feature stores up front (say on a GPU node, before a CPU sweep):
`python -m slr.extract [the data and model overrides slr.train will get]`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from slr.data.wlasl import SPLITS
from slr.runs.records import record_data

log = logging.getLogger(__name__)


def extract(cfg: DictConfig) -> dict[str, dict]:
    """Build (or find) the train, val and test stores that `slr.train data.features=cached`
    with the same settings will read; return a summary per split, with the build's timing
    (None for a store that was already there). Logs a timing table and writes the summary and
    the splits' total timing to OUTPUT_DIR/extract.json."""
    datamodule = instantiate(cfg.data, features="cached")
    datamodule.prepare_data()
    counts = record_data(datamodule, Path(cfg.paths.output_dir))
    datamodule.use_encoder(instantiate(cfg.model.backbone).store_encoder())
    summary = {}
    for split in SPLITS:
        if not counts[split]["available"]:
            log.warning("%s: no videos available, nothing to extract", split)
            continue
        started = time.time()
        dataset = datamodule.cached(split)
        summary[split] = {
            **counts[split],
            "cached": len(dataset) - len(dataset.store.failed),
            "failed": len(dataset.store.failed),
            "views": dataset.store.views,
            "store": str(dataset.store.path),
            "timing": built_now(dataset.store.path, started),
        }
    header = f"{'split':6} {'listed':>7} {'missing':>8} {'cached':>7} {'failed':>7} {'views':>6}"
    lines = [header] + [
        f"{s:6} {v['nominal']:7d} {v['missing']:8d} {v['cached']:7d} {v['failed']:7d} "
        f"{v['views']:6d}  {v['store']}"
        for s, v in summary.items()
    ]
    log.info("feature stores:\n%s", "\n".join(lines))
    log.info("extraction speed:\n%s", timing_table(summary))
    timed = [v["timing"] for v in summary.values() if v.get("timing")]
    record = {"splits": summary, "timing": total_timing(timed) if timed else None}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "extract.json").write_text(json.dumps(record, indent=2))
    return summary


def built_now(store: Path, since: float) -> dict | None:
    """The store's build timing (slr.data.features.extraction_timing) if this run built it,
    None when it was already there."""
    meta = store / "meta.json"
    if meta.stat().st_mtime < since:
        return None
    return json.loads(meta.read_text()).get("timing")


TIMING_COLUMNS = (  # (header, key in the timing, format)
    ("workers", "num_workers", "d"),
    ("clips", "clips", "d"),
    ("frames", "frames", "d"),
    ("seconds", "seconds", ".1f"),
    ("clips/s", "clips_per_s", ".2f"),
    ("frames/s", "frames_per_s", ".1f"),
    ("backbone f/s", "backbone_frames_per_s", ".1f"),
    ("backbone s", "backbone_seconds", ".1f"),
    ("decode f/s", "decode_frames_per_s", ".1f"),
    ("decode s", "decode_seconds", ".1f"),
    ("waited s", "wait_seconds", ".1f"),
)


def timing_table(summary: dict) -> str:
    """Per split: end-to-end clips/s and frames/s, the backbone alone (frames over the time
    spent encoding) and decoding alone (summed over the decoding processes), and how long the
    backbone waited for decoded clips; `hidden` = end-to-end / backbone-alone frames/s."""
    head = f"{'split':6}" + "".join(f" {h:>12}" for h, _, _ in TIMING_COLUMNS) + "  hidden"
    lines = [head]
    rows = {split: v.get("timing") for split, v in summary.items()}
    timed = [t for t in rows.values() if t]
    if len(timed) > 1:
        rows["all"] = total_timing(timed)
    for split, t in rows.items():
        if not t:
            lines.append(f"{split:6} (store already built: nothing timed)")
            continue
        row = "".join(f" {t[k]:12{fmt}}" for _, k, fmt in TIMING_COLUMNS)
        hidden = t["frames_per_s"] / t["backbone_frames_per_s"] if t["frames_per_s"] else 0
        lines.append(f"{split:6}{row}  {hidden:.2f}")
    return "\n".join(lines)


def total_timing(timings: list[dict]) -> dict:
    """The splits' timings added up, rates recomputed from the sums."""
    keys = ("clips", "frames", "seconds", "wait_seconds", "backbone_seconds", "decode_seconds")
    total = {k: sum(t[k] for t in timings) for k in keys}
    seconds = total["seconds"]

    def per(work: float, time_s: float) -> float:
        return round(work / time_s, 2) if time_s > 0 else 0.0

    return {
        "num_workers": timings[0]["num_workers"],
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in total.items()},
        "clips_per_s": per(total["clips"], seconds),
        "frames_per_s": per(total["frames"], seconds),
        "backbone_frames_per_s": per(total["frames"], total["backbone_seconds"]),
        "decode_frames_per_s": per(total["frames"], total["decode_seconds"]),
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    extract(cfg)


if __name__ == "__main__":
    main()
