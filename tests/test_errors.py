"""Errors that name the problem: the file or the setting, and what to do about it."""

from __future__ import annotations

import zipfile

import pytest
from hydra import compose, initialize
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from slr.inference.export import export
from slr.models.checkpoint import load_checkpoint
from slr.predict import predict
from slr.train import train
from tests.helpers import save_random_checkpoint


def predict_cfg(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose(config_name="predict", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def bad_checkpoints(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    html = tmp_path / "page.ckpt"
    html.write_text("<html>502 Bad Gateway</html>")
    other_zip = tmp_path / "other.ckpt"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "not a tensor archive")
    return {"is empty": empty, "is not a PyTorch checkpoint": html, "cannot be read": other_zip}


def test_a_file_that_is_no_checkpoint_is_named(bad_checkpoints):
    for says, path in bad_checkpoints.items():
        with pytest.raises(ValueError, match=f"ckpt_path={path} {says}"):
            load_checkpoint(path)


def test_resuming_from_a_file_that_is_no_checkpoint(train_cfg, bad_checkpoints):
    with open_dict(train_cfg):
        train_cfg.ckpt_path = str(bad_checkpoints["is empty"])
    with pytest.raises(ValueError, match="ckpt_path=.*empty.ckpt is empty"):
        train(train_cfg)


def test_data_root_that_is_a_file(train_cfg, tmp_path):
    a_file = tmp_path / "WLASL_v0.3.json"
    a_file.write_text("[]")
    with open_dict(train_cfg):
        train_cfg.data.root = str(a_file)
        train_cfg.data.make_demo = False
    with pytest.raises(NotADirectoryError, match=f"data.root={a_file} is a file, not a folder"):
        train(train_cfg)


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("topk=0", "topk=0"),
        ("topk=-3", "topk=-3"),
        ("num_frames=-1", "num_frames=-1"),
        ("image_size=0", "image_size=0"),
    ],
)
def test_predict_settings_are_checked_first(tmp_path, override, says):
    ckpt = save_random_checkpoint(tmp_path / "r.ckpt", ["a", "b"])
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    cfg = predict_cfg([f"ckpt_path={ckpt}", f"input={video}", override])
    with pytest.raises(ValueError, match=says):
        predict(cfg)


def test_unwritable_outputs_are_named_before_work(tmp_path):
    ckpt = save_random_checkpoint(tmp_path / "r.ckpt", ["a", "b"])
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=f"output={blocker / 'model.onnx'}: cannot write"):
        export(ckpt, "torchscript", blocker / "model.onnx", check=False)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    out = blocker / "out.jsonl"
    cfg = predict_cfg([f"ckpt_path={ckpt}", f"input={video}", f"output={out}"])
    with pytest.raises(OSError, match=f"output={out}: cannot write"):
        predict(cfg)
