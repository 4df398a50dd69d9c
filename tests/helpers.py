"""What several test modules share (imported as `from tests.helpers import ...`; conftest.py holds
only fixtures): the tiny training overrides, composed configs, a `slr.train` subprocess, and a
random-weights checkpoint in the layout slr.train writes."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

TINY = [
    "data.num_frames=4",
    "data.image_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.lstm_hidden=16",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def compose_cfg(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose conf/<name>.yaml with overrides; paths point into `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose(config_name=name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    GlobalHydra.instance().clear()
    return cfg


REPO = Path(__file__).resolve().parents[1]


def run_train(root: Path, *overrides: str, multirun: bool = False, timeout: int = 300, **kwargs):
    """`python -m slr.train [-m] experiment=demo` on a tiny dataset in a subprocess (run from the
    repo root, so this checkout's slr is the one imported); returns the CompletedProcess."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "slr.train", *(["-m"] if multirun else [])]
    cmd += ["experiment=demo", f"data.root={root}", *TINY]
    return subprocess.run(
        [*cmd, *overrides], cwd=REPO, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def save_random_checkpoint(
    path: Path,
    glosses: list[str],
    num_frames: int = 4,
    image_size: int = 32,
    lstm_hidden: int = 16,
    seed: int = 0,
    backbone: dict | None = None,
    **net_options,
) -> Path:
    """An slr checkpoint of an untrained network (random-init backbone) in the layout
    `load_checkpoint` reads: for inference and export tests that need no training run.
    `net_options` and `backbone` add SignClassifier and FrameEncoder arguments."""
    import torch
    from hydra.utils import instantiate

    from slr.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from slr.models.module import SignLitModule

    net_config = {
        "_target_": "slr.models.mobilenet_lstm.SignClassifier",
        "num_classes": len(glosses),
        "lstm_hidden": lstm_hidden,
        "backbone": {
            "_target_": "slr.models.encoder.FrameEncoder",
            "weights": None,
            **(backbone or {}),
        },
        **net_options,
    }
    torch.manual_seed(seed)
    preprocessing = {
        "num_frames": num_frames,
        "image_size": image_size,
        "bbox_margin": 0.15,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
    module = SignLitModule(
        net=instantiate(net_config),
        glosses=glosses,
        net_config=net_config,
        preprocessing=preprocessing,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path
