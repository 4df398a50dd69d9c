"""Probe (issue 16): the frozen backbone quantized to int8 by ONNX Runtime (static, QDQ, per-channel
weights, activations calibrated on real frames) against the float32 ORT graph: speed, and the
feature error on other real frames. Real weights matter here (calibration ranges):

    python experiments/speed/probe_int8.py WEIGHTS.pth CLIPS_DIR [SIZE] [REPEATS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)

from slr.benchmarks.local import clip_dataset
from slr.models.encoder import FrameEncoder
from slr.models.ort_backbone import export_onnx


def frames_of(clips: str, size: int, per_clip: int = 8) -> np.ndarray:
    """Normalized NCHW float32 frames, `per_clip` from each clip: (N, 3, S, S)."""
    encoder = FrameEncoder(weights=None)
    _, dataset = clip_dataset(clips, per_clip, size)
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        x = item["frames"][: int(item["length"])].float()
        out.append(((x - encoder.mean) / encoder.std).numpy())
    return np.concatenate(out)


class Reader(CalibrationDataReader):
    def __init__(self, frames: np.ndarray, batch: int = 8) -> None:
        self.batches = iter([frames[i : i + batch] for i in range(0, len(frames), batch)])

    def get_next(self):
        x = next(self.batches, None)
        return None if x is None else {"x": x}


def session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    weights, clips = sys.argv[1], sys.argv[2]
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 224
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    encoder = FrameEncoder(weights_path=weights)
    frames = frames_of(clips, size)
    calib, test = frames[::2], frames[1::2]  # calibrate on half the frames, test on the others
    tmp = Path(tempfile.mkdtemp())
    (tmp / "fp32.onnx").write_bytes(export_onnx(encoder.folded()))
    quantize_static(
        str(tmp / "fp32.onnx"),
        str(tmp / "int8.onnx"),
        Reader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    sessions = {name: session(str(tmp / f"{name}.onnx")) for name in ("fp32", "int8")}
    chunk = test[:8]
    out = {name: s.run(None, {"x": test})[0] for name, s in sessions.items()}
    a, b = torch.from_numpy(out["fp32"]), torch.from_numpy(out["int8"])
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    rel = (a - b).norm(dim=1) / a.norm(dim=1)
    print(f"{len(test)} test frames ({len(calib)} calibration), {size} px")
    print(f"int8 vs fp32 features: cosine mean {cos.mean():.5f} min {cos.min():.5f}; "
          f"relative L2 error mean {rel.mean():.4f} max {rel.max():.4f}")  # fmt: skip
    rates = {name: [] for name in sessions}
    for s in sessions.values():
        s.run(None, {"x": chunk})
    for _ in range(repeats):
        for name, s in sessions.items():
            start, calls = time.perf_counter(), 0
            while time.perf_counter() - start < 2:
                s.run(None, {"x": chunk})
                calls += 1
            rates[name].append(calls * len(chunk) / (time.perf_counter() - start))
    for name, r in rates.items():
        print(f"{name}: median {statistics.median(r):.1f} frames/s {[round(x, 1) for x in r]}")


if __name__ == "__main__":
    main()
