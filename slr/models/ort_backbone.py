"""The frozen backbone under ONNX Runtime (`model.backbone.runtime=onnxruntime`): the folded
MobileNetV2 and its pooling exported once to an in-memory ONNX graph and run by ORT's CPU
execution provider, float32 like torch. Needs the `onnx` extra."""

from __future__ import annotations

import io
import logging
import warnings

import torch
from torch import nn


class _Pooled(nn.Module):
    """Backbone + global average pooling as one graph: (n, 3, H, W) normalized -> (n, 1280)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).mean(dim=(2, 3))  # (n, 1280, h, w) -> (n, 1280)


def export_onnx(folded: nn.Module, pooled: bool = True) -> bytes:
    """The backbone (+ global pooling when `pooled`) as an ONNX graph, every size dynamic."""
    model = (_Pooled(folded) if pooled else folded).eval()
    sample = torch.zeros(2, 3, 64, 64)  # NCHW float; batch, height and width stay free
    axes = {"x": {0: "n", 2: "h", 3: "w"}, "features": {0: "n"}}
    if not pooled:
        axes["features"].update({2: "fh", 3: "fw"})
    buffer = io.BytesIO()
    for name in ("onnxscript", "onnx_ir", "torch.onnx"):  # each optimizer pass logs at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        # the TorchScript-based exporter: ~1 s for MobileNetV2, against ~10 s for dynamo's
        torch.onnx.export(
            model,
            (sample,),
            buffer,
            dynamo=False,
            input_names=["x"],
            output_names=["features"],
            dynamic_axes=axes,
            opset_version=17,
        )
    return buffer.getvalue()


class OrtBackbone:
    """A callable like the torch backbone: (n, 3, H, W) float32 -> (n, 1280) features when
    `pools` (global pooling, in the graph), else (n, 1280, h, w) maps for the caller to pool
    (grid pooling: ONNX's adaptive pooling needs static sizes).

    Args:
        folded: the eval-mode backbone (BatchNorm folded) to export.
        pool_grid: as FrameEncoder's; 1 puts the pooling into the graph.
        threads: ORT intra-op threads; None = torch's current setting, so both runtimes use the
            cores the process was given.
        spin: let ORT's idle threads spin-wait. Off, like OMP_WAIT_POLICY=PASSIVE for torch: on
            a small CPU, spinning threads take the cores DataLoader workers decode on.
    """

    def __init__(
        self, folded: nn.Module, pool_grid: int = 1, threads: int | None = None, spin: bool = False
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(
                f"model.backbone.runtime=onnxruntime needs onnxruntime ({e}): "
                "pip install -e '.[onnx]'"
            ) from e
        self.pools = pool_grid == 1  # FrameEncoder.forward: the output is already pooled
        graph = export_onnx(folded, self.pools)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (y,) = self.session.run(None, {"x": x.detach().cpu().contiguous().numpy()})
        return torch.from_numpy(y)  # (n, 1280) or (n, 1280, h, w)
