"""Output paths checked before the work that fills them, so a run does not compute for minutes
and then fail to write, with an error that names neither the setting nor the folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
