"""The whole network (backbone + LSTM + head) as one file for serving (ONNX or TorchScript), its
JSON sidecar, and the check that it computes what PyTorch does; `python -m slr.export` runs it.

The exported function takes frames (B, T, 3, S, S) uint8 RGB 0..255, B and T free, S fixed to the
trained size, and returns logits (B, num_classes); a JSON file beside it holds the glosses and the
preprocessing. Every frame is taken as real: there is no lengths input (see `ExportableClassifier`).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from slr.models.checkpoint import check_checkpoint_file, load_trained
from slr.models.encoder import FrameEncoder
from slr.models.mobilenet_lstm import SignClassifier
from slr.runs.files import check_writable

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TOLERANCE = 1e-4  # max |exported - PyTorch| logit difference the check accepts


class ExportableClassifier(nn.Module):
    """A SignClassifier as one traceable function of full-length clips:
    frames (B, T, 3, S, S) uint8 (or float) RGB 0..255 -> logits (B, num_classes).

    The classifier's own modules and maths, on the path where every frame is real (no packing),
    without the encoder's chunk loop, whose count export would freeze at the sample's size: the
    backbone takes all B*T frames in one call. Clips shorter than T frames are not supported:
    sample T frames, or export and call with the shorter T.
    """

    def __init__(self, net: SignClassifier) -> None:
        super().__init__()
        self.net = net

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[0], frames.shape[1]
        x = frames.flatten(0, 1).float()  # (B, T, 3, S, S) -> (B*T, 3, S, S)
        encoder = self.net.encoder
        x = (x - encoder.mean) / encoder.std  # the encoder's (1, 3, 1, 1) ImageNet mean/std
        features = encoder.pool(encoder.backbone(x))  # (B*T, D)
        return self.net.classify(features.unflatten(0, (b, t)))  # (B*T, D) -> (B, T, D)


def export_onnx(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    """torch.onnx's dynamo exporter (torch.export + onnxscript), batch and frame axes dynamic."""
    try:
        import onnxscript  # noqa: F401  (what the exporter translates with)
    except ImportError as e:
        raise ImportError(
            f"format=onnx needs onnx and onnxscript ({e}): pip install -e '.[onnx]'"
        ) from e
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("frames")}
    for name in ("onnxscript", "onnx_ir"):  # their graph optimizer logs every pass at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # torch.export's own deprecation notices and LSTM weight-attribute warnings: not ours
        warnings.simplefilter("ignore", (FutureWarning, UserWarning, DeprecationWarning))
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            dynamo=True,
            external_data=False,  # one file: the network is ~10-40 MB, far below protobuf's 2 GB
            input_names=["frames"],
            output_names=["logits"],
            dynamic_shapes={"frames": dims},
            verbose=False,
        )


def export_torchscript(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    """torch.jit.trace: the trace records shapes as ops, so batch and frame counts stay free."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still loads
        # nn.LSTM's input checks compare sizes in Python; freezing those checks is harmless
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (sample,))
    traced.save(str(path))


def load_exported(path: Path, fmt: str):
    """The exported file as a function: (B, T, 3, S, S) uint8 frames -> (B, C) logits."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            module = torch.jit.load(str(path))
        return lambda frames: module(frames)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda frames: torch.from_numpy(session.run(None, {"frames": frames.numpy()})[0])


def sidecar(ckpt_path: str, fmt: str, glosses: list[str], preprocessing: dict) -> dict:
    """What a caller needs besides the model file: the input contract, preprocessing, glosses."""
    size = preprocessing["image_size"]
    return {
        "format": fmt,
        "checkpoint": str(ckpt_path),
        "input": {
            "name": "frames",
            "shape": ["batch", "frames", 3, size, size],
            "dtype": "uint8",
            "layout": "RGB, 0..255; the model divides by 255 and applies mean/std itself",
            "frames": "every frame is real (no padding, no lengths input); trained with "
            f"num_frames={preprocessing['num_frames']}",
        },
        "output": {"name": "logits", "shape": ["batch", len(glosses)], "probabilities": "softmax"},
        "preprocessing": {
            **preprocessing,
            "sampling": "num_frames frames evenly spaced from the clip's first to its last",
            "crop": "square around the signer's bbox, bbox_margin larger than its longer side "
            "(the centre square without a bbox), resized to image_size x image_size (area filter)",
        },
        "glosses": glosses,
    }


def check_export(
    net: SignClassifier, path: Path, fmt: str, batch: int, frames: int, size: int
) -> float:
    """Max |exported - PyTorch| over the logits of a random clip batch of the given shape."""
    clips = torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8)
    with torch.inference_mode():
        expected = net(clips)  # the training code's own forward (chunked backbone, packed LSTM)
    got = load_exported(path, fmt)(clips)
    return (got - expected).abs().max().item()


def export(
    ckpt_path: str | Path,
    fmt: str = "onnx",
    output: str | Path | None = None,
    check: bool = True,
    model_overrides: dict | None = None,
) -> Path:
    """Write the model file and its JSON sidecar (`<model file>.json`); return the model path.

    Args:
        ckpt_path: the slr checkpoint.
        fmt: "onnx" or "torchscript".
        output: the model file; None = beside the checkpoint, its stem + .onnx / .torchscript.pt.
        check: compare the exported model with PyTorch at another batch size and clip length.
        model_overrides: `model.*` settings given on the command line (see `load_trained`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt}: use one of {', '.join(FORMATS)}")
    path = Path(output) if output else Path(ckpt_path).with_suffix(FORMATS[fmt])
    check_checkpoint_file(ckpt_path)
    check_writable(path, "output")  # before the export's work, not after it
    trained = load_trained(ckpt_path, model_overrides=model_overrides)
    net = trained.net.eval()
    if not isinstance(net.encoder, FrameEncoder):
        raise ValueError(
            f"{ckpt_path}: its backbone is {type(net.encoder).__name__} (keypoints from "
            "MediaPipe's own graph, which torch cannot trace); export covers the MobileNetV2 "
            "backbone. Run the checkpoint with slr.predict instead."
        )
    # the export computes in float32; bf16 autocast is a speed option of the PyTorch backbone
    net.encoder.bf16 = False
    spec = trained.preprocessing.to_dict()
    model = ExportableClassifier(net).eval()
    size, num_frames = spec["image_size"], spec["num_frames"]
    # batch 2: torch.export would take a batch of 1 for a constant
    sample = torch.randint(0, 256, (2, num_frames, 3, size, size), dtype=torch.uint8)
    (export_onnx if fmt == "onnx" else export_torchscript)(model, sample, path)
    meta = sidecar(str(ckpt_path), fmt, trained.glosses, spec)
    Path(f"{path}.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote %s (%.1f MB) and %s.json", path, path.stat().st_size / 2**20, path)
    if check:
        if fmt == "onnx" and not _has_onnxruntime():
            log.warning("check skipped: onnxruntime is not installed (pip install -e '.[onnx]')")
            return path
        batch, frames = 3, max(2, num_frames // 2)  # unlike the export sample's (2, num_frames)
        diff = check_export(net, path, fmt, batch, frames, size)
        if diff > TOLERANCE:
            raise RuntimeError(
                f"{path}: logits differ from PyTorch's by up to {diff:.2e} (> {TOLERANCE:g}) "
                f"on a ({batch}, {frames}) batch"
            )
        log.info("check: logits match PyTorch within %.1e on a (%d, %d) batch", diff, batch, frames)
    return path


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
