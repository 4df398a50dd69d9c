"""Rebuild a trained SignLitModule from its checkpoint alone (architecture, glosses, input spec)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from hydra.utils import instantiate

from slr.models.module import SignLitModule


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> SignLitModule:
    """The module saved at `path`, in eval mode. The backbone's weights come from the checkpoint,
    so nothing is downloaded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (set ckpt_path=...)")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    hparams = ckpt.get("hyper_parameters", {})
    if "net_config" not in hparams or "glosses" not in hparams:
        raise ValueError(f"{path} is not an slr checkpoint (no net_config/glosses hyperparameters)")
    net_config = copy.deepcopy(hparams["net_config"])
    # the checkpoint holds the backbone weights: build it empty instead of loading ImageNet's
    net_config["backbone"].update(weights=None, weights_path=None)
    module = SignLitModule(net=instantiate(net_config), **hparams)
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()
