"""Every config composes and its objects instantiate (no weights are downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from slr.models.mobilenet_lstm import SignClassifier
from tests.helpers import compose_cfg

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_cfg("train", [f"experiment={experiment}"], tmp_path)
    if "weights" in cfg.model.backbone:  # MobileNetV2: random init (no download); keypoints: none
        cfg.model.backbone.weights = None
    if OmegaConf.is_missing(cfg.data, "root") or cfg.data.root is None:
        cfg.data.root = str(tmp_path)
    datamodule = instantiate(cfg.data)
    assert datamodule.hparams.num_frames > 0
    net = instantiate(cfg.model, num_classes=5)
    assert isinstance(net, SignClassifier)
    optimizer = instantiate(cfg.optimizer)(params=[p for p in net.parameters() if p.requires_grad])
    instantiate(cfg.scheduler)(optimizer=optimizer)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)


def test_contract_keys(tmp_path):
    cfg = compose_cfg("train", ["model.lstm_hidden=256", "data.root=/x"], tmp_path)
    assert cfg.model.lstm_hidden == 256
    for key in ("lstm_layers", "bidirectional", "dropout"):
        assert key in cfg.model
    assert {"weights", "weights_path"} <= set(cfg.model.backbone)
    for key in (
        "root",
        "subset",
        "split_file",
        "num_frames",
        "image_size",
        "batch_size",
        "num_workers",
    ):
        assert key in cfg.data


def test_test_config_needs_a_checkpoint(tmp_path):
    cfg = compose_cfg("test", ["data.root=/x"], tmp_path)
    assert OmegaConf.is_missing(cfg, "ckpt_path")
    assert cfg.data.num_frames is None  # taken from the checkpoint


@pytest.mark.parametrize(
    ("choice", "names"),
    [
        ("logger=tensorboard", {"tensorboard"}),
        ("logger=wandb", {"wandb"}),
        ("logger=[csv,tensorboard]", {"csv", "tensorboard"}),
        ("logger=many_loggers", {"csv", "tensorboard", "wandb"}),
    ],
)
def test_loggers_compose(choice, names, tmp_path):
    cfg = compose_cfg("train", ["data.root=/x", choice], tmp_path)
    assert set(cfg.logger) == names
    if "wandb" in names:
        assert cfg.logger.wandb.offline is True  # nothing leaves the machine unless asked


@pytest.mark.slow
def test_a_run_logs_to_csv_tensorboard_and_wandb_at_once(tiny_root, tmp_path, monkeypatch):
    from slr.train import train
    from tests.helpers import TINY

    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = ["experiment=demo", f"data.root={tiny_root}", *TINY, "test=false"]
    cfg = compose_cfg("train", [*overrides, "logger=many_loggers"], tmp_path / "run")
    train(cfg)
    run = tmp_path / "run"
    assert (run / "csv" / "metrics.csv").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert list((run / "wandb").glob("offline-run-*"))
