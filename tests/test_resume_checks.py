"""Resuming with other settings is refused before any work, naming the keys; a finished run
resumed is left as it was; the run's first overrides stay in .hydra/overrides.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

import slr.data.datamodule as datamodule_module
from slr.train import train
from tests.helpers import run_train


@pytest.fixture
def finished_run(train_cfg):
    with open_dict(train_cfg):
        train_cfg.test = False
    metrics = train(train_cfg.copy())
    return train_cfg, Path(train_cfg.paths.output_dir), metrics


def resume(cfg, **changes):
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.ckpt_path = "last"
        for key, value in changes.items():
            OmegaConf.update(cfg, key, value)
    return train(cfg)


def no_extraction(monkeypatch):
    fail = lambda *a, **k: pytest.fail("features extracted for a refused resume")  # noqa: E731
    monkeypatch.setattr(datamodule_module, "build_store", fail)


def test_resume_with_a_changed_setting_is_refused_before_any_work(finished_run, monkeypatch):
    cfg, run_dir, _ = finished_run
    before = {f: (run_dir / f).read_bytes() for f in ("metrics.json", "status.json")}
    no_extraction(monkeypatch)
    with pytest.raises(ValueError, match=r"model\.lstm_hidden: 16 -> 32.*allow_changed_config"):
        resume(cfg, **{"model.lstm_hidden": 32})
    assert {f: (run_dir / f).read_bytes() for f in before} == before  # the run is as it was


def test_resume_with_changes_on_purpose(finished_run):
    cfg, run_dir, _ = finished_run
    metrics = resume(cfg, **{"trainer.max_epochs": 3, "allow_changed_config": True})
    assert metrics["epochs"] == 3
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 3


def test_resuming_a_finished_run_changes_nothing(finished_run, monkeypatch):
    cfg, run_dir, metrics = finished_run
    before = {f: (run_dir / f).read_bytes() for f in ("metrics.json", "status.json")}
    no_extraction(monkeypatch)
    assert resume(cfg) == metrics
    assert {f: (run_dir / f).read_bytes() for f in before} == before


def test_resuming_a_finished_run_on_purpose_keeps_its_values(finished_run):
    cfg, run_dir, metrics = finished_run
    again = resume(cfg, allow_changed_config=True)  # nothing left to train: no new train/*
    for key in ("train/loss", "train/top1", "val/top1", "best_epoch"):
        assert again[key] == metrics[key] is not None, key


def test_a_checkpoint_of_other_settings_is_refused(finished_run, tmp_path, monkeypatch):
    cfg, run_dir, _ = finished_run
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "elsewhere")  # no config.yaml: the checkpoint's
        cfg.ckpt_path = str(run_dir / "checkpoints" / "last.ckpt")
        cfg.data.num_frames = 6
    no_extraction(monkeypatch)
    with pytest.raises(ValueError, match=r"data\.num_frames: 4 -> 6"):
        train(cfg)


@pytest.mark.slow
def test_the_first_overrides_file_is_kept(tiny_root, tmp_path):
    run_dir = tmp_path / "run"
    first = run_train(tiny_root, f"hydra.run.dir={run_dir}", "test=false")
    assert first.returncode == 0, first.stderr[-3000:]
    original = (run_dir / ".hydra" / "overrides.yaml").read_text()
    refused = run_train(tiny_root, f"hydra.run.dir={run_dir}", "test=false", "ckpt_path=last",
                        "model.lstm_hidden=32")  # fmt: skip
    assert refused.returncode == 1
    assert "model.lstm_hidden: 16 -> 32" in refused.stderr
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == original
    part = yaml.safe_load((run_dir / ".hydra" / "overrides.resume1.yaml").read_text())
    assert "ckpt_path=last" in part and "model.lstm_hidden=32" in part


def test_backbone_speed_settings_are_not_changes(tmp_path):
    from slr.runs.provenance import flat
    from slr.runs.resume import changed_settings
    from tests.helpers import compose_cfg

    cfg = compose_cfg("train", ["data.root=/x", "model.backbone.chunk_frames=4"], tmp_path)
    before = flat({**OmegaConf.to_container(cfg, resolve=True)})
    before["model.backbone.chunk_frames"] = None  # a run started before chunks by pixel budget
    before["model.backbone.cpu_jit"] = False
    before["model.lstm_hidden"] = 128
    assert changed_settings(cfg, before) == {"model.lstm_hidden": (128, 512)}
