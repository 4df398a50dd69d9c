"""The package layout holds: the training pipeline imports no acquisition tooling, inference loads
no datamodule, importing slr changes no global state but the OpenMP policy; a checkpoint of the
earlier layout loads and evaluates the same; commands that load a checkpoint take slr.train's
`model.*` overrides."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from slr.data.dataset import ClipDataset, collate_clips
from slr.data.transforms import ClipTransform
from slr.data.wlasl import read_subset
from slr.models.checkpoint import load_trained
from slr.models.metrics import TopKAccuracy
from slr.runs.cli import model_overrides
from slr.test import evaluate
from tests.helpers import REPO, compose_cfg, save_random_checkpoint


def loaded_modules(code: str) -> set[str]:
    """The slr modules a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in sys.modules if m.startswith('slr')))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


@pytest.mark.slow
def test_training_pipeline_imports_no_acquisition_code():
    loaded = loaded_modules("import slr.train")  # the datamodule, the model, the run records
    assert "slr.data.datamodule" in loaded
    assert not {m for m in loaded if m.startswith("slr.acquisition")}


@pytest.mark.slow
def test_inference_loads_no_datamodule():
    loaded = loaded_modules("import slr.predict, slr.export")
    assert "slr.inference.predictor" in loaded
    assert not {"slr.data.datamodule", "slr.data.features"} & loaded


@pytest.mark.slow
def test_importing_slr_changes_no_global_state_but_the_openmp_policy():
    code = """
import os, warnings
import torch, pytorch_lightning, hydra  # their own filters are not ours to count
before = list(warnings.filters)
import slr, slr.train, slr.test, slr.predict, slr.export, slr.models.module, slr.runs.status
assert warnings.filters == before, [f for f in warnings.filters if f not in before]
from omegaconf import OmegaConf
assert not OmegaConf.has_resolver('uid')
print(os.environ['OMP_WAIT_POLICY'])
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "PASSIVE"


# What slr.train wrote before the layout rebuild (f4099b6 and earlier): the same classes, named by
# these `_target_` strings, and hyperparameters without the keys added since (rnn, pooling, ...).
OLD_NET_CONFIG = {
    "_target_": "slr.models.mobilenet_lstm.SignClassifier",
    "lstm_hidden": 16,
    "lstm_layers": 1,
    "bidirectional": False,
    "dropout": 0.3,
    "feature_dropout": 0.1,
    "feature_norm": True,
    "backbone": {
        "_target_": "slr.models.encoder.FrameEncoder",
        "weights": None,
        "weights_path": None,
        "chunk_frames": 4,
        "init_seed": 0,
        "bf16": False,
        "cpu_jit": True,
    },
}


def write_old_checkpoint(path, glosses, seed=0):
    """A checkpoint as the earlier layout's slr.train saved it, and the network it holds."""
    from slr.models.encoder import FrameEncoder
    from slr.models.mobilenet_lstm import SignClassifier

    torch.manual_seed(seed)
    options = {k: v for k, v in OLD_NET_CONFIG.items() if k not in ("_target_", "backbone")}
    net = SignClassifier(len(glosses), FrameEncoder(weights=None), **options).eval()
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    hparams = {
        "glosses": glosses,
        "label_smoothing": 0.1,
        "net_config": {**OLD_NET_CONFIG, "num_classes": len(glosses)},
        "preprocessing": {
            "num_frames": 4,
            "image_size": 32,
            "bbox_margin": 0.15,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
        "mixup_alpha": 0.0,
        "dataset": {
            "_target_": "slr.data.datamodule.WLASLDataModule",
            "subset": None,
            "split_file": None,
        },
    }
    torch.save({"state_dict": state, "hyper_parameters": hparams, "epoch": 3}, path)
    return net


@pytest.mark.slow
def test_a_checkpoint_of_the_earlier_layout_loads_and_evaluates_the_same(tiny_root, tmp_path):
    index = read_subset(tiny_root / "WLASL_v0.3.json", None)
    ckpt = tmp_path / "old.ckpt"
    net = write_old_checkpoint(ckpt, index.glosses)
    # the numbers the earlier code computed: its network over the test clips, as evaluated
    clips = ClipDataset(index.splits["test"], tiny_root / "videos", 4, ClipTransform(32))
    batch = collate_clips([clips[i] for i in range(len(clips))])
    with torch.inference_mode():
        expected_logits = net(batch["frames"], batch["length"])
    expected = TopKAccuracy(len(index.glosses))
    expected.update(expected_logits, batch["label"])
    expected = {k: v.item() for k, v in expected.compute().items()}

    trained = load_trained(ckpt)
    assert trained.glosses == index.glosses and trained.preprocessing.image_size == 32
    with torch.inference_mode():
        logits = trained.net(batch["frames"], batch["length"])
    assert torch.allclose(logits, expected_logits, atol=1e-5)

    overrides = [f"ckpt_path={ckpt}", f"data.root={tiny_root}", "data.subset=null"]
    cfg = compose_cfg("test", [*overrides, "data.num_workers=0"], tmp_path / "test")
    metrics = evaluate(cfg, overrides={})
    assert metrics["test/videos"] == len(clips)
    for key in ("top1", "top5", "top1_class", "top5_class"):
        assert metrics[f"test/{key}"] == pytest.approx(expected[key], abs=1e-6), key


@pytest.mark.parametrize("command", ["test", "predict", "export", "demo"])
def test_checkpoint_commands_take_the_train_commands_model_overrides(command, tmp_path):
    given = [
        "model.backbone.chunk_frames=8",
        "model.backbone.cpu_jit=false",
        "model.backbone.weights=null",
        "model.lstm_hidden=99",
    ]
    from hydra import compose, initialize
    from hydra.core.global_hydra import GlobalHydra

    required = ["ckpt_path=x.ckpt", *(["input=x.mp4"] if command == "predict" else [])]
    GlobalHydra.instance().clear()
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose(command, overrides=[*required, *given])
    GlobalHydra.instance().clear()
    assert model_overrides(cfg, given) == {
        "backbone.chunk_frames": 8,
        "backbone.cpu_jit": False,
        "backbone.weights": None,
        "lstm_hidden": 99,
    }


def test_runtime_settings_apply_and_fixed_ones_warn(tmp_path, caplog):
    ckpt = save_random_checkpoint(tmp_path / "m.ckpt", ["a", "b"], lstm_hidden=16)
    overrides = {"backbone.chunk_frames": 8, "backbone.cpu_jit": False, "lstm_hidden": 99}
    with caplog.at_level(logging.WARNING, logger="slr.models.checkpoint"):
        trained = load_trained(ckpt, model_overrides={**overrides, "backbone.weights": None})
    assert trained.net.encoder.chunk_frames == 8 and trained.net.encoder.cpu_jit is False
    assert trained.net.lstm.hidden_size == 16  # the checkpoint's, not 99
    warned = caplog.text
    assert "model.lstm_hidden=99 ignored: the checkpoint was trained with 16" in warned
    assert "model.backbone.weights=None ignored: the checkpoint holds" in warned
    assert "chunk_frames" not in warned.split("only model.backbone")[0]  # applied, not warned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="slr.models.checkpoint"):
        load_trained(ckpt, model_overrides={"lstm_hidden": 16})  # the same value: nothing to say
    assert not caplog.text


@pytest.mark.slow
def test_slr_test_cli_accepts_a_copied_train_command_line(tiny_root, tmp_path):
    ckpt = save_random_checkpoint(tmp_path / "m.ckpt", ["grow", "shrink", "open"])
    done = subprocess.run(
        [
            sys.executable, "-m", "slr.test", f"ckpt_path={ckpt}", f"data.root={tiny_root}",
            "data.subset=null", "data.num_workers=0", f"hydra.run.dir={tmp_path / 'run'}",
            "model.backbone.chunk_frames=8", "model.backbone.weights=null", "model.lstm_hidden=99",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    log = (tmp_path / "run" / "test.log").read_text()
    assert "model.lstm_hidden=99 ignored" in log
    assert (tmp_path / "run" / "test_metrics.json").is_file()
