"""Smaller ways a run could mislead: a video under two glosses, a dead run shown as running,
slr.extract counting failed clips as cached."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from omegaconf import open_dict

from slr.data.wlasl import WLASLFormatError, read_subset
from slr.extract import extract
from slr.runs.aggregate import read_run


def test_a_video_under_two_glosses_is_refused(tiny_root, tmp_path):
    index = json.loads((tiny_root / "WLASL_v0.3.json").read_text())
    twice = dict(index[0]["instances"][0], split="train")
    index[1]["instances"].append(twice)
    path = tmp_path / "WLASL_v0.3.json"
    path.write_text(json.dumps(index))
    with pytest.raises(WLASLFormatError, match=f"video {twice['video_id']} is listed under gloss"):
        read_subset(path, None)


def write_status(run_dir, pid: int, host: str) -> None:
    run_dir.mkdir()
    state = {"status": "running", "pid": pid, "host": host, "epoch": 3}
    (run_dir / "status.json").write_text(json.dumps(state))


def test_a_killed_run_is_dead_not_running(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    write_status(tmp_path / "killed", int(gone.stdout), socket.gethostname())
    run = read_run(tmp_path / "killed")
    assert run.status == "dead"
    assert "is gone" in run.error and "ckpt_path=last" in run.error
    write_status(tmp_path / "live", os.getpid(), socket.gethostname())
    assert read_run(tmp_path / "live").status == "running (epoch 3)"
    write_status(tmp_path / "elsewhere", int(gone.stdout), "another-node")  # cannot tell
    assert read_run(tmp_path / "elsewhere").status == "running (epoch 3)"


@pytest.mark.slow
def test_extract_counts_failed_clips_apart(train_cfg, tiny_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(tiny_root, root, ignore=shutil.ignore_patterns("features"))
    index = json.loads((root / "WLASL_v0.3.json").read_text())
    bad = next(i["video_id"] for e in index for i in e["instances"] if i["split"] == "train")
    (root / "videos" / f"{bad}.mp4").write_bytes(b"<html></html>")
    with open_dict(train_cfg):
        train_cfg.data.root = str(root)
        train_cfg.data.cache_dir = str(tmp_path / "cache")
        train_cfg.data.cache_views = 1
    summary = extract(train_cfg)
    assert (summary["train"]["cached"], summary["train"]["failed"]) == (11, 1)
