"""Runs that would use no data fail: settings no clip can satisfy are refused before any work,
and a split whose clips (nearly) all fail to decode stops the run with status `failed`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
from omegaconf import open_dict

from slr.data.failures import TooManyFailures, check_failures
from slr.train import train
from tests.helpers import REPO, TINY, run_train

HTML = b"<!DOCTYPE html><html><body>429 Too Many Requests</body></html>\n"


def broken_copy(root: Path, dest: Path, split: str | None = None, count: int | None = None) -> Path:
    """A copy of `root` in which `count` videos of `split` (None: every video) are HTML pages."""
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns("features"))
    index = json.loads((dest / "WLASL_v0.3.json").read_text())
    ids = [i["video_id"] for e in index for i in e["instances"] if split in (None, i["split"])]
    for video_id in ids[:count]:
        (dest / "videos" / f"{video_id}.mp4").write_bytes(HTML)
    return dest


def point_at(cfg, root: Path, **data) -> None:
    with open_dict(cfg):
        cfg.data.root = str(root)
        cfg.data.cache_dir = str(root / "features")
        cfg.data.update(data)


def read_status(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "status.json").read_text())


@pytest.mark.parametrize(
    ("key", "value"),
    [("num_frames", 0), ("image_size", 0), ("batch_size", -1), ("max_failed_fraction", 1.0)],
)
def test_unusable_data_settings_are_refused_before_any_work(train_cfg, key, value):
    with open_dict(train_cfg):
        train_cfg.data[key] = value
    with pytest.raises(ValueError, match=f"data.{key}={value}"):
        train(train_cfg)
    status = read_status(train_cfg)
    assert status["status"] == "failed"
    assert f"data.{key}" in status["error"]
    out = Path(train_cfg.paths.output_dir)
    assert not (out / "metrics.json").exists()
    assert not (out / "config.yaml").exists()  # stopped before the run was set up


@pytest.mark.parametrize("features", ["cached", "live"])
def test_a_root_of_html_pages_fails_the_run(train_cfg, tiny_root, tmp_path, features):
    root = broken_copy(tiny_root, tmp_path / "html")
    point_at(train_cfg, root, features=features)
    # cached: the train store, before training; live: the first validation (before train's end)
    split, n = ("train", 12) if features == "cached" else ("val", 6)
    with pytest.raises(TooManyFailures, match=f"no usable {split} clip: all {n} failed"):
        train(train_cfg)
    status = read_status(train_cfg)
    assert status["status"] == "failed"
    assert f"no usable {split} clip" in status["error"]
    assert not (Path(train_cfg.paths.output_dir) / "metrics.json").exists()


@pytest.mark.slow
def test_more_than_the_allowed_share_failing_fails_the_run(train_cfg, tiny_root, tmp_path):
    root = broken_copy(tiny_root, tmp_path / "some", split="val", count=2)  # 2 of 6
    point_at(train_cfg, root, features="live")
    with pytest.raises(TooManyFailures, match=r"2 of 6 val clips \(33%\).*max_failed_fraction=0.1"):
        train(train_cfg)
    assert read_status(train_cfg)["status"] == "failed"


@pytest.mark.slow
def test_failed_train_clips_are_counted_in_metrics(train_cfg, tiny_root, tmp_path):
    root = broken_copy(tiny_root, tmp_path / "two", split="train", count=2)  # 2 of 12
    point_at(train_cfg, root, max_failed_fraction=0.5)
    with open_dict(train_cfg):
        train_cfg.test = False
    metrics = train(train_cfg)
    assert metrics["train/skipped"] == 2
    assert (
        json.loads((Path(train_cfg.paths.output_dir) / "metrics.json").read_text())["train/skipped"]
        == 2
    )
    assert read_status(train_cfg)["status"] == "done"


def test_check_failures_thresholds():
    check_failures("val", {}, 10, 0.1)
    check_failures("val", 1, 10, 0.1)  # 10% is allowed
    with pytest.raises(TooManyFailures, match="2 of 10 val clips"):
        check_failures("val", 2, 10, 0.1)
    with pytest.raises(TooManyFailures, match="no usable test clip.*e.g. a: bad"):
        check_failures("test", {"a": "bad", "b": "bad"}, 2, 0.9)


@pytest.mark.slow
def test_cli_exits_non_zero_on_a_bad_setting(tiny_root, tmp_path):
    done = run_train(tiny_root, f"hydra.run.dir={tmp_path / 'run'}", "data.num_frames=0")
    assert done.returncode == 1
    assert "data.num_frames=0" in done.stderr
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"


class WaitForSignal(pl.Callback):
    """As epoch `epoch` starts (the ones before it checkpointed), touch `marker` and idle until
    Lightning has seen a SIGTERM, as a run busy in its epoch would."""

    def __init__(self, epoch: int, marker: str) -> None:
        self.epoch, self.marker = epoch, Path(marker)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            self.marker.write_text("waiting\n")
            deadline = time.monotonic() + 300
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_fails_the_run_with_128_plus_15_and_it_resumes(tiny_root, tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "waiting"
    overrides = ["trainer.max_epochs=3", f"hydra.run.dir={run_dir}"]
    cmd = [sys.executable, "-m", "slr.train", "experiment=demo", f"data.root={tiny_root}", *TINY]
    wait = [
        f"+callbacks.wait._target_={__name__}.WaitForSignal",
        "+callbacks.wait.epoch=1",
        f"+callbacks.wait.marker={marker}",
    ]
    proc = subprocess.Popen(
        [*cmd, *overrides, *wait], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run never reached epoch 1"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()[-3000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed"
    assert "SIGTERM" in status["error"]
    assert not (run_dir / "metrics.json").exists()

    done = run_train(tiny_root, *overrides, "ckpt_path=last")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3
    assert json.loads((run_dir / "status.json").read_text())["status"] == "done"


def test_slr_test_fails_when_the_test_clips_fail(tiny_root, tmp_path):
    from slr.test import evaluate
    from tests.helpers import compose_cfg, save_random_checkpoint

    glosses = json.loads((tiny_root / "WLASL_v0.3.json").read_text())
    ckpt = save_random_checkpoint(tmp_path / "r.ckpt", [g["gloss"] for g in glosses])
    root = broken_copy(tiny_root, tmp_path / "html", split="test")
    overrides = ["experiment=demo", f"data.root={root}", f"ckpt_path={ckpt}", *TINY[2:4]]
    cfg = compose_cfg("test", [*overrides, "data.features=live"], tmp_path / "test")
    with pytest.raises(TooManyFailures, match="no usable test clip: all 6 failed"):
        evaluate(cfg)
    assert not (tmp_path / "test" / "test_metrics.json").exists()


@pytest.mark.slow
def test_cli_exits_non_zero_on_a_root_of_html_pages(tiny_root, tmp_path):
    root = broken_copy(tiny_root, tmp_path / "html")
    done = run_train(root, f"hydra.run.dir={tmp_path / 'run'}", f"data.cache_dir={root}/features")
    assert done.returncode == 1
    assert "no usable train clip: all 12 failed" in done.stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and "no usable train clip" in status["error"]
    assert not (tmp_path / "run" / "metrics.json").exists()
