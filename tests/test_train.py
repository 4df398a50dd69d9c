"""End to end on a tiny synthetic dataset: train, metrics.json, then slr.test on the checkpoint."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from slr.models.checkpoint import load_checkpoint
from slr.runs.provenance import git_state
from slr.test import evaluate
from slr.train import train
from tests.helpers import TINY, compose_cfg

METRIC_KEYS = ("test/top1", "test/top5", "test/top1_class", "test/top5_class")


@pytest.mark.slow
def test_train_then_test_round_trip(train_cfg, tiny_root, tmp_path):
    metrics = train(train_cfg)
    run_dir = tmp_path / "train"
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == metrics
    for key in ("val/top1", "best_ckpt", *METRIC_KEYS):
        assert saved[key] is not None, key
    assert saved["videos"]["test"] == {"nominal": 6, "available": 6, "missing": 0}
    assert saved["test/videos"] == 6
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert (run_dir / "glosses.txt").read_text().split() == ["grow", "shrink", "open"]
    assert saved["epochs"] == 2
    assert saved["val/videos"] == 6
    assert saved["val/top5"] is not None
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "done"
    assert status["val/top1"] == saved["val/top1"]
    # provenance: resolved config, git state and package versions
    config = OmegaConf.load(run_dir / "config.yaml")
    assert config.paths.output_dir == str(run_dir)
    assert config.model.lstm_hidden == 16
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["versions"]["torch"] == metadata.version("torch")
    git = provenance["git"]
    assert (len(git["commit"]) == 40 and isinstance(git["dirty"], bool)) or "note" in git

    module = load_checkpoint(saved["best_ckpt"])
    assert module.hparams.glosses == ["grow", "shrink", "open"]
    assert module.hparams.preprocessing["num_frames"] == 4

    cfg = compose_cfg(
        "test",
        [
            "experiment=demo",
            f"data.root={tiny_root}",
            f"ckpt_path={saved['best_ckpt']}",
            *TINY[2:4],
        ],
        tmp_path / "test",
    )
    tested = evaluate(cfg)
    assert json.loads((tmp_path / "test" / "test_metrics.json").read_text()) == tested
    for key in METRIC_KEYS:
        assert tested[key] == pytest.approx(saved[key], abs=1e-6), key


def test_checkpoint_rebuilds_the_same_network(train_cfg, tmp_path):
    metrics = train(train_cfg.copy())
    module = load_checkpoint(metrics["best_ckpt"])
    state = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=False)["state_dict"]
    for key, value in module.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_failed_run_records_its_error(train_cfg, tmp_path):
    with open_dict(train_cfg):
        train_cfg.data.root = str(tmp_path / "nowhere")
        train_cfg.data.make_demo = False
    with pytest.raises(FileNotFoundError, match="data.root="):
        train(train_cfg)
    status = json.loads((tmp_path / "train" / "status.json").read_text())
    assert status["status"] == "failed"
    assert "FileNotFoundError: data.root=" in status["error"]
    assert not (tmp_path / "train" / "metrics.json").exists()


def test_git_state_outside_a_repository(tmp_path):
    state = git_state(tmp_path)
    assert state["commit"] is None
    assert state["dirty"] is None
    assert str(tmp_path) in state["note"]


@pytest.mark.slow
def test_debug_overfit_memorizes_the_training_batches(tiny_root, tmp_path):
    """debug=overfit: the same few batches, no regularization; the tiny data's 12 training clips
    are learned by heart (train top-1 from the last epoch; 100% from the third on)."""
    overrides = ["experiment=demo", "debug=overfit", f"data.root={tiny_root}", *TINY]
    cfg = compose_cfg("train", [*overrides, "trainer.max_epochs=10"], tmp_path / "overfit")
    assert cfg.trainer.overfit_batches > 0
    assert cfg.model.dropout == 0 and cfg.data.cache_views == 1
    assert cfg.callbacks.early_stopping is None
    metrics = train(cfg)
    assert metrics["train/top1"] >= 0.99


@pytest.mark.slow
def test_same_seed_same_numbers(train_cfg, tmp_path):
    """seed + trainer.deterministic: a run repeated gives the same losses and accuracies."""
    runs = []
    for name in ("a", "b"):
        cfg = train_cfg.copy()
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / name)
            cfg.trainer.deterministic = True
            cfg.test = False
        runs.append(train(cfg))
    for key in ("train/loss", "train/top1", "val/top1", "val/top5"):
        assert runs[0][key] == runs[1][key], key
