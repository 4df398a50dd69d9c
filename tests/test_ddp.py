"""DDP on the CPU (2 processes, gloo) in a subprocess: every val/test video is counted once, the
metrics are synced across ranks, and they equal a one-process evaluation of the same checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from slr.acquisition.demo import make_demo_dataset
from slr.evaluation.evaluate import evaluate_split
from slr.models.checkpoint import load_checkpoint
from slr.runs.ddp import config_flags, own_process_group
from tests.helpers import run_train


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory) -> Path:
    """9 val and 3 test videos: odd counts, so a padding sampler would repeat one."""
    root = tmp_path_factory.mktemp("odd_wlasl")
    return make_demo_dataset(
        root, num_classes=3, train_per_class=4, val_per_class=3, test_per_class=1, size=(64, 48)
    )


@pytest.mark.slow
def test_ddp_cpu_matches_one_process(odd_root, tmp_path):
    """A two-run sweep, each run DDP (the second checks that a sweep's runs each get their own
    process group), then the first run's checkpoint evaluated by one process."""
    sweep = tmp_path / "sweep"
    done = run_train(
        odd_root,
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "model.lstm_hidden=16,8",
        f"hydra.sweep.dir={sweep}",
        multirun=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for run in ("0", "1"):
        assert (sweep / run / "train_ddp_process_1.log").is_file()  # rank 1 ran, logged apart
        metrics = json.loads((sweep / run / "metrics.json").read_text())
        assert metrics["val/videos"] == 9  # each video once: 5 on rank 0, 4 on rank 1
        assert metrics["test/videos"] == 3
        assert json.loads((sweep / run / "status.json").read_text())["status"] == "done"
    run_dir = sweep / "0"
    metrics = json.loads((run_dir / "metrics.json").read_text())

    # the same best checkpoint, evaluated by one process on the same data
    cfg = OmegaConf.load(run_dir / "config.yaml")
    module = load_checkpoint(metrics["best_ckpt"])
    datamodule = instantiate(cfg.data)
    datamodule.use_encoder(module.net.encoder.store_encoder())
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (val,) = trainer.validate(module, datamodule=datamodule)
    _, report = evaluate_split(trainer, module, datamodule, "test")
    test = report.metrics
    assert val["val/videos"] == 9
    for key in ("val/top1", "val/top5", "val/top1_class", "val/top5_class"):
        assert metrics[key] == pytest.approx(val[key], abs=1e-6), key
    for key in ("test/top1", "test/top5", "test/top1_class"):
        assert metrics[key] == pytest.approx(test[key], abs=1e-6), key


def test_each_sweep_job_leaves_the_process_as_it_found_it(monkeypatch):
    """What Lightning's DDP launcher sets in the launching process (rank variables, thread
    count) is undone after a job, so the next job of a local sweep starts clean."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    threads = torch.get_num_threads()
    with own_process_group():
        os.environ["LOCAL_RANK"] = "0"
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    assert "LOCAL_RANK" not in os.environ
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert torch.get_num_threads() == threads


def test_a_sweep_jobs_command_keeps_the_config_source():
    """Ranks 1.. of a swept DDP job re-run its own command: the flags naming the config stay,
    the sweep's -m and value lists go (the job's overrides replace them)."""
    argv = ["-m", "-cd", "my_conf", "--config-name=mine", "model.lstm_hidden=8,16"]
    assert config_flags(argv) == ["-cd", "my_conf", "--config-name=mine"]
