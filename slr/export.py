"""Export a checkpoint's whole network (backbone + LSTM + head) for serving:
`python -m slr.export ckpt_path=CKPT format=onnx|torchscript [output=FILE]`.

The exported function takes frames (B, T, 3, S, S) uint8 RGB 0..255, B and T free, S fixed to the
trained size, and returns logits (B, num_classes); a JSON file beside it holds the glosses and the
preprocessing. Every frame is taken as real: there is no lengths input (see
`slr.inference.export.ExportableClassifier`).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from slr.inference.export import export
from slr.runs.cli import model_overrides, quiet_known_warnings, require


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    quiet_known_warnings()
    require(cfg, "python -m slr.export ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt "
            "format=onnx")  # fmt: skip
    export(cfg.ckpt_path, cfg.format, cfg.output, cfg.check, model_overrides(cfg))


if __name__ == "__main__":
    main()
