"""Rebuild a trained SignLitModule from its checkpoint alone (architecture, glosses, input spec)."""

from __future__ import annotations

import copy
import pickle
import zipfile
from pathlib import Path

import torch
from hydra.utils import instantiate

from slr.models.module import SignLitModule


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
