"""Rebuild a trained model from its checkpoint alone (architecture, weights, glosses, input spec):
`load_trained` is the one loader slr.test, slr.predict, slr.export and slr.demo use."""

from __future__ import annotations

import copy
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from slr.data.preprocessing import Preprocessing
from slr.models.mobilenet_lstm import SignClassifier
from slr.models.module import SignLitModule

log = logging.getLogger(__name__)

# model.backbone.* settings that change how fast the backbone runs, not what it computes: a
# command that loads a checkpoint applies them. Every other model.* setting is the checkpoint's.
RUNTIME_BACKBONE = ("chunk_frames", "chunk_pixels", "cpu_jit", "bf16", "runtime")


def check_checkpoint_file(path: str | Path, key: str = "ckpt_path") -> Path:
    """`path` if it holds a PyTorch checkpoint (torch.save writes a zip archive), else an error
    naming the setting and the file, instead of torch's "invalid load key"."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: no such file (set {key}=... to a .ckpt file)")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(
            f"{key}={path} is empty (0 bytes): a checkpoint whose writing was cut off? Use "
            "another one (checkpoints/ holds the best epoch's and last.ckpt)"
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{key}={path} is not a PyTorch checkpoint ({size} bytes, no zip archive: a cut-off "
            f"copy, or another kind of file); point {key} at a .ckpt file that slr.train wrote"
        )
    return path


def read_checkpoint(path: str | Path, map_location="cpu", key: str = "ckpt_path") -> dict:
    """torch.load of a checkpoint file, with errors that name the setting and the file."""
    path = check_checkpoint_file(path, key)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{key}={path} cannot be read as a checkpoint: {first}") from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{key}={path} holds a {type(ckpt).__name__}, not a checkpoint")
    return ckpt


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> SignLitModule:
    """The module saved at `path`, in eval mode. The backbone's weights come from the checkpoint,
    so nothing is downloaded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (set ckpt_path=...)")
    ckpt = read_checkpoint(path, map_location)
    hparams = ckpt.get("hyper_parameters", {})
    if "net_config" not in hparams or "glosses" not in hparams:
        raise ValueError(f"{path} is not an slr checkpoint (no net_config/glosses hyperparameters)")
    net_config = copy.deepcopy(hparams["net_config"])
    # the checkpoint holds the backbone weights: build it empty instead of loading ImageNet's
    net_config["backbone"].update(weights=None, weights_path=None)
    module = SignLitModule(net=instantiate(net_config), **hparams)
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


@dataclass(frozen=True)
class TrainedModel:
    """What a checkpoint holds: the network (eval mode), its glosses in label order, the input it
    was trained on, and the data it was trained with (`dataset`, None for early checkpoints).
    `module` is the same network in its LightningModule, for `Trainer.predict`."""

    net: SignClassifier
    glosses: list[str]
    preprocessing: Preprocessing
    dataset: dict | None
    module: SignLitModule


def load_trained(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    model_overrides: dict[str, Any] | None = None,
) -> TrainedModel:
    """The trained model at `path`. `model_overrides` are the `model.*` settings a user gave
    (dotted keys below `model`, e.g. {"backbone.chunk_frames": 8}): the backbone's runtime
    settings (RUNTIME_BACKBONE) are applied; any other is the checkpoint's to fix, so it is
    ignored with a warning when it differs from the checkpoint's value."""
    module = load_checkpoint(path, map_location)
    apply_model_overrides(module.net, module.hparams["net_config"], model_overrides or {})
    return TrainedModel(
        net=module.net,
        glosses=list(module.hparams["glosses"]),
        preprocessing=Preprocessing.from_dict(module.hparams["preprocessing"]),
        dataset=module.hparams.get("dataset"),
        module=module,
    )


def apply_model_overrides(net: SignClassifier, net_config: dict, overrides: dict) -> None:
    """Set the runtime backbone settings among `overrides` on `net`; warn about the others."""
    for key, value in overrides.items():
        group, _, name = key.rpartition(".")
        if group == "backbone" and name in RUNTIME_BACKBONE:
            setattr(net.encoder, name, value)
            continue
        saved: Any = net_config
        for part in key.split("."):
            saved = saved.get(part, "(not set)") if isinstance(saved, dict) else "(not set)"
        if key in ("backbone.weights", "backbone.weights_path"):
            log.warning("model.%s=%s ignored: the checkpoint holds the backbone's weights",
                        key, value)  # fmt: skip
        elif saved != value:
            log.warning("model.%s=%s ignored: the checkpoint was trained with %s, which is used "
                        "(only model.backbone.{%s} apply at this stage)", key, value, saved,
                        ",".join(RUNTIME_BACKBONE))  # fmt: skip
