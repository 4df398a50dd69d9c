"""A run's output files: JSON written atomically, metrics as plain JSON numbers, and output paths
checked before the work that fills them (so a run does not compute for minutes and then fail to
write, with an error that names neither the setting nor the folder)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch

from slr.data.files import atomic_write_text


def check_writable(path: str | Path, key: str) -> Path:
    """`path` (a file to write) if its folder exists or can be made and takes a file; else
    OSError naming the setting `key`."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{key}={path} is a folder: give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=".write_test")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OSError(
            f"{key}={path}: cannot write into {path.parent} ({e.strerror or e}); choose a "
            f"writable place with {key}=..."
        ) from e
    return path


def write_json(path: Path, obj: dict) -> None:
    """Write atomically, so a reader never sees half a file."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def to_builtin(metrics: dict) -> dict:
    """Tensors and floats as plain JSON numbers (NaN as null)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        out[key] = value
    return out
