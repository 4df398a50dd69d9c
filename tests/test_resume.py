"""Resume: a run killed (SIGKILL) after a checkpoint continues from its last.ckpt with
`hydra.run.dir=RUN_DIR ckpt_path=last` and finishes the same number of epochs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from slr.train import train
from tests.helpers import REPO, TINY, run_train


class HangAtEpoch(pl.Callback):
    """Stands in for a run that dies mid-way: as epoch `epoch` starts (the ones before it are
    checkpointed and logged), touch `marker` and wait to be killed."""

    def __init__(self, epoch: int, marker: str) -> None:
        self.epoch, self.marker = epoch, Path(marker)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            self.marker.write_text("checkpoint saved\n")
            time.sleep(600)


def epochs_in(path: Path) -> list[int]:
    with path.open() as f:
        return sorted({int(r["epoch"]) for r in csv.DictReader(f) if r.get("val/top1")})


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(tiny_root, tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "hung"
    overrides = ["trainer.max_epochs=4", f"hydra.run.dir={run_dir}"]
    cmd = [sys.executable, "-m", "slr.train", "experiment=demo", f"data.root={tiny_root}", *TINY]
    hang = [
        f"+callbacks.hang._target_={__name__}.HangAtEpoch",
        "+callbacks.hang.epoch=2",
        f"+callbacks.hang.marker={marker}",
    ]
    proc = subprocess.Popen(
        [*cmd, *overrides, *hang],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run never reached epoch 2"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1
    killed = json.loads((run_dir / "status.json").read_text())
    assert killed["status"] == "running"  # what a killed run leaves
    assert killed["epoch"] == 1
    assert not (run_dir / "metrics.json").exists()

    done = run_train(tiny_root, *overrides, "ckpt_path=last")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Restored all states from the checkpoint" in done.stderr + done.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 4
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "done"
    assert status["resumed_from"] == str(last)
    assert status["wall_s"] > killed["wall_s"]  # the killed part's time is carried over
    assert metrics["best_epoch"] is not None  # kept across the restart with the callback state
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 3
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"][0]["last_epoch"] == 4
    # the resumed process trained epochs 2 and 3 only; the first part's epochs are kept aside
    assert epochs_in(run_dir / "csv" / "metrics.csv") == [2, 3]
    assert epochs_in(run_dir / "csv" / "metrics.part1.csv") == [0, 1]
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert len(provenance["resumes"]) == 1


def test_last_without_a_checkpoint_says_what_to_do(train_cfg, tmp_path):
    with open_dict(train_cfg):
        train_cfg.ckpt_path = "last"
    with pytest.raises(FileNotFoundError, match="hydra.run.dir"):
        train(train_cfg)
    status = json.loads((tmp_path / "train" / "status.json").read_text())
    assert status["status"] == "failed"
    assert "FileNotFoundError" in status["error"]


class FailAtEpoch(pl.Callback):
    """An in-process stand-in for a killed run: fails as epoch `epoch` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("interrupted")


def losses_and_lrs(run_dir: Path) -> list[str]:
    """metrics.csv's learning rate and train loss of each epoch, in order."""
    with (run_dir / "csv" / "metrics.csv").open() as f:
        rows = [r["lr-AdamW"] or r["train/loss"] for r in csv.DictReader(f)]
    return [x for x in rows if x]


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(train_cfg, tmp_path):
    """Optimizer, LR schedule, epoch and the random generators (shuffle, cached view, dropout)
    all continue: epochs 2 and 3 of the resumed run give the very losses and LRs of a run that
    was never stopped."""

    def run(name: str, **changes):
        cfg = train_cfg.copy()
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / name)
            cfg.trainer.max_epochs = 4
            cfg.test = False
            cfg.merge_with(changes)
        return train(cfg)

    full = run("full")
    with pytest.raises(RuntimeError, match="interrupted"):
        run("part", callbacks={"fail": {"_target_": f"{__name__}.FailAtEpoch", "epoch": 2}})
    resumed = run("part", ckpt_path="last")
    assert resumed["epochs"] == full["epochs"] == 4
    for key in ("train/loss", "train/top1", "val/top1", "best_epoch"):
        assert resumed[key] == full[key], key
    resumed_epochs = losses_and_lrs(tmp_path / "part")  # lr and loss of epochs 2 and 3
    assert len(resumed_epochs) == 4
    assert resumed_epochs == losses_and_lrs(tmp_path / "full")[-4:]
