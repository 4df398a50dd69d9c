"""Shared fixtures: the real WLASL material in ../shared/wlasl, a tiny synthetic dataset, and a
composed training config shrunk to run in seconds on a CPU (helpers live in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from slr.acquisition.demo import make_demo_dataset
from tests.helpers import TINY, compose_cfg

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "wlasl"


@pytest.fixture(scope="session")
def shared_wlasl() -> Path:
    """The read-only real WLASL index, split files and 20 clips that sit beside the repo."""
    if not (SHARED / "WLASL_v0.3.json").is_file():
        pytest.skip(f"real WLASL material not found at {SHARED} (expected ../shared/wlasl)")
    return SHARED


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A 3-gloss synthetic dataset in the WLASL layout (4 train, 2 val, 2 test per gloss)."""
    root = tmp_path_factory.mktemp("tiny_wlasl")
    return make_demo_dataset(
        root, num_classes=3, train_per_class=4, val_per_class=2, test_per_class=2, size=(64, 48)
    )


@pytest.fixture
def train_cfg(tiny_root: Path, tmp_path: Path) -> DictConfig:
    """`experiment=demo` on the tiny dataset, a few seconds end to end."""
    overrides = ["experiment=demo", f"data.root={tiny_root}", *TINY]
    return compose_cfg("train", overrides, tmp_path / "train")
