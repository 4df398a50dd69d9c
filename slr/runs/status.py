"""status.json: a run's state (running, done, failed with its error), kept current as it goes, so a
sweep shows a failed or stalled run before the sweep ends."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from slr.models.metrics import MONITOR
from slr.runs.files import to_builtin, write_json

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunStatus:
    """Writes `run_dir/status.json` at each change. Only one process of a distributed run
    writes (`enabled`); the others keep the same state silently.

    Args:
        run_dir: the run directory.
        enabled: whether this process writes (global rank 0).
    """

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / STATUS_FILE
        self.enabled = enabled
        self.start = time.perf_counter()
        self.earlier_s = 0.0  # wall time of the parts before a resume
        self.state: dict = {}

    def running(self, resumed_from: str | None = None) -> None:
        """A resumed run names its checkpoint and carries over the earlier part's wall time."""
        if resumed_from and self.path.is_file():
            self.earlier_s = json.loads(self.path.read_text()).get("wall_s") or 0.0
        self.state = {
            "status": "running",
            "started": _now(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "resumed_from": resumed_from,
            "epoch": None,
        }
        self.write()

    def progress(self, **values) -> None:
        """After each validation: the epoch reached and its val metrics."""
        self.state.update(to_builtin(values))
        self.write()

    def done(self, metrics: dict) -> None:
        self.state.update(status="done", finished=_now(), **{MONITOR: metrics.get(MONITOR)})
        self.write()

    def failed(self, error: BaseException, reason: str | None = None) -> None:
        self.state.update(
            status="failed",
            finished=_now(),
            error=reason or f"{type(error).__name__}: {error}",
            traceback="".join(traceback.format_exception(error)),
        )
        self.write()

    @property
    def wall_s(self) -> float:
        return round(self.earlier_s + time.perf_counter() - self.start, 1)

    def write(self) -> None:
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, {**self.state, "updated": _now(), "wall_s": self.wall_s})
