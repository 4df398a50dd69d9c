"""slr.export: the exported network gives PyTorch's logits at batch sizes and clip lengths other
than the export sample's (2, num_frames), and its sidecar holds glosses and preprocessing."""

from __future__ import annotations

import json

import pytest
import torch

from slr.inference.export import ExportableClassifier, export, load_exported
from slr.models.checkpoint import load_checkpoint
from tests.helpers import save_random_checkpoint

GLOSSES = [f"gloss{i}" for i in range(6)]
NUM_FRAMES, SIZE = 4, 32
SHAPES = [(3, 6), (1, 1), (1, 9)]  # (B, T), none of them the export sample's (2, 4)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.ckpt"
    return save_random_checkpoint(path, GLOSSES, NUM_FRAMES, SIZE, lstm_hidden=16)


def clips(batch: int, frames: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(batch * 100 + frames)
    return torch.randint(0, 256, (batch, frames, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen)


def assert_matches_pytorch(ckpt, path, fmt):
    net = load_checkpoint(ckpt).net
    run = load_exported(path, fmt)
    for batch, frames in SHAPES:
        x = clips(batch, frames)
        with torch.no_grad():
            expected = net(x)  # the training code's forward: chunked backbone, packed LSTM
        got = run(x)
        assert got.shape == (batch, len(GLOSSES))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_wrapper_equals_the_network(ckpt):
    net = load_checkpoint(ckpt).net
    x = clips(2, 5)
    with torch.no_grad():
        torch.testing.assert_close(ExportableClassifier(net).eval()(x), net(x), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_onnx_matches_pytorch(ckpt, tmp_path):
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript (.[onnx])")
    ort = pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (.[onnx])")
    path = export(ckpt, "onnx", tmp_path / "m.onnx")  # its own check runs too
    (frames,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()
    assert frames.name == "frames" and frames.type == "tensor(uint8)"
    assert isinstance(frames.shape[0], str) and isinstance(frames.shape[1], str)  # dynamic
    assert frames.shape[2:] == [3, SIZE, SIZE]
    assert_matches_pytorch(ckpt, path, "onnx")
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    assert meta["glosses"] == GLOSSES
    assert meta["preprocessing"]["num_frames"] == NUM_FRAMES
    assert meta["preprocessing"]["image_size"] == SIZE
    assert meta["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["input"]["dtype"] == "uint8"


@pytest.mark.slow
def test_torchscript_matches_pytorch(ckpt, tmp_path):
    path = export(ckpt, "torchscript")  # default: beside the checkpoint
    assert path == ckpt.with_suffix(".torchscript.pt") and path.is_file()
    assert json.loads(path.with_name(path.name + ".json").read_text())["glosses"] == GLOSSES
    assert_matches_pytorch(ckpt, path, "torchscript")


def test_unknown_format_is_refused(ckpt):
    with pytest.raises(ValueError, match="format=tflite"):
        export(ckpt, "tflite")
