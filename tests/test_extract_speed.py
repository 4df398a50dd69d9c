"""slr.extract's timings (issue 16): decode, backbone and wait seconds, clips/s and frames/s per
store it builds, logged and written to extract.json; nothing timed for a store already there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slr.extract import extract, timing_table

TIMING_KEYS = {
    "num_workers",
    "clips",
    "frames",
    "seconds",
    "wait_seconds",
    "backbone_seconds",
    "decode_seconds",
    "clips_per_s",
    "frames_per_s",
    "backbone_frames_per_s",
    "decode_frames_per_s",
}


@pytest.mark.slow
def test_extract_records_decode_and_backbone_time(train_cfg, tmp_path):
    train_cfg.data.cache_dir = str(tmp_path / "cache")  # fresh stores: every one is built
    train_cfg.data.cache_views = 1
    summary = extract(train_cfg)
    assert set(summary) == {"train", "val", "test"}  # the per-split summary keeps its keys
    for split, v in summary.items():
        t = v["timing"]
        assert set(t) == TIMING_KEYS
        assert t["clips"] == v["cached"] and t["frames"] > 0
        assert t["backbone_seconds"] > 0 and t["decode_seconds"] > 0
        assert t["seconds"] >= t["backbone_seconds"] + t["wait_seconds"] - 0.1, split
        assert t["num_workers"] == train_cfg.data.num_workers
    record = json.loads((Path(train_cfg.paths.output_dir) / "extract.json").read_text())
    assert record["timing"]["clips"] == sum(v["cached"] for v in summary.values())
    assert "all " in timing_table(summary)  # the splits' total row

    again = extract(train_cfg)  # the stores exist now: nothing is built or timed
    assert all(v["timing"] is None for v in again.values())
    assert "nothing timed" in timing_table(again)
