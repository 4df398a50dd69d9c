"""What the commands share: required values named with an example, the `model.*` settings a user
gave on the command line (for commands that load a checkpoint), instantiating config groups, and
the filters for warnings that are known and not ours to fix (set when a command starts, never on
import)."""

from __future__ import annotations

import warnings
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def quiet_known_warnings() -> None:
    """Silence the warnings every run would print and no user can act on."""
    # the frozen encoder stays in eval mode on purpose (BatchNorm statistics must not move)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # under DDP Lightning suggests sync_dist=True for every epoch-level value; ours are
    # torchmetrics objects whose compute() already syncs across processes
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\(")
    # raised inside Lightning's own loops (pytorch_lightning 2.6 with torch 2.14), not ours
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def model_overrides(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """The `model.*` keys set on the command line (`overrides`, by default this Hydra run's), as
    {"backbone.chunk_frames": 8, ...} with their values in `cfg`: what `load_trained` applies
    or warns about. Values that come from config files are the checkpoint's business."""
    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    keys = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("model.") and key not in keys:
            keys.append(key)
    return {key[len("model.") :]: OmegaConf.select(cfg, key) for key in keys}


def require(cfg: DictConfig, example: str) -> None:
    """Stop before any work when a required (`???`) value is unset, saying which and showing a
    command line that sets it (Hydra's own error names the key but not what to give it)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ValueError(f"{', '.join(missing)} must be set, e.g. {example}")


def instantiate_all(group: DictConfig | None) -> list:
    """Callbacks or loggers: one `_target_` per entry of a config group."""
    return [instantiate(c) for c in (group or {}).values() if c is not None]


def instantiate_unwrapped(node: DictConfig):
    """instantiate(), raising a constructor's own ValueError (which names the setting) rather
    than Hydra's InstantiationException around it."""
    try:
        return instantiate(node)
    except InstantiationException as e:
        if isinstance(e.__cause__, ValueError):
            raise e.__cause__ from None
        raise
