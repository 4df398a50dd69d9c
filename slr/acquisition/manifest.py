"""Per-video status tables (CSV) that slr.download and slr.prepare keep under ROOT, and the
`missing.txt` list in the format the WLASL authors' request form takes (one video_id per line)."""

from __future__ import annotations

import csv
import io
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from slr.data.files import atomic_write_text  # noqa: F401  (used by the acquisition tools)

MISSING_FILE = "missing.txt"


def writable_folder(folder: Path, command: str) -> None:
    """Create `folder` if need be and check that files can be written there, so an unwritable
    data.root fails once, up front, instead of once per video."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        test = folder / f".write-test-{os.getpid()}"
        test.write_bytes(b"")
        test.unlink()
    except OSError as e:
        raise PermissionError(
            f"{command} cannot write to {folder} ({e.strerror or e}). It writes its files under "
            "data.root: make that folder writable, or copy WLASL_v0.3.json (and nslt_*.json) "
            "to a writable folder and set data.root to it."
        ) from e


class Manifest:
    """Rows keyed by video_id, written whole and atomically at most every `interval` seconds
    (always on `flush`). Rows of videos outside this run's subset are kept as they were.

    Args:
        path: the CSV file; read if it exists.
        columns: the column names, in order; missing values are written empty.
        interval: the least time between two writes while a run goes on, so a 21k-row table
            is not rewritten after every video.
    """

    def __init__(self, path: str | Path, columns: Sequence[str], interval: float = 1.0) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.interval = interval
        self.rows: dict[str, dict[str, str]] = {}
        self._written = 0.0
        if self.path.is_file():
            with self.path.open(newline="") as f:
                for row in csv.DictReader(f):
                    self.rows[row["video_id"]] = {c: row.get(c) or "" for c in self.columns}

    def get(self, video_id: str) -> dict[str, str] | None:
        return self.rows.get(video_id)

    def update(self, video_id: str, **values: object) -> None:
        row = self.rows.setdefault(video_id, dict.fromkeys(self.columns, ""))
        row["video_id"] = video_id
        for key, value in values.items():
            row[key] = "" if value is None else str(value)
        if time.monotonic() - self._written >= self.interval:
            self.flush()

    def flush(self) -> None:
        # index order (label, then id), so equal runs write byte-equal files
        def order(row: dict[str, str]) -> tuple:
            label = row.get("label", "")
            return (int(label) if label.isdigit() else 1 << 30, row["video_id"])

        out = io.StringIO()
        writer = csv.DictWriter(out, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(self.rows.values(), key=order))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, out.getvalue())
        self._written = time.monotonic()


def write_missing(root: Path, video_ids: Iterable[str]) -> Path:
    """ROOT/missing.txt: the ids to ask the WLASL authors for, one per line, sorted."""
    ids = sorted(set(video_ids))
    atomic_write_text(root / MISSING_FILE, "".join(f"{v}\n" for v in ids))
    return root / MISSING_FILE


def status_table(rows: Iterable[dict[str, str]], splits: Sequence[str]) -> str:
    """A plain-text table: one line per status, videos per split and in total."""
    counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        counts[row["status"], row["split"]] += 1
    statuses = sorted({s for s, _ in counts}, key=lambda s: (s != "ok", s))
    head = f"{'status':14}" + "".join(f"{s:>8}" for s in (*splits, "total"))
    lines = [head]
    for status in statuses:
        per = [counts[status, s] for s in splits]
        lines.append(f"{status:14}" + "".join(f"{n:8d}" for n in (*per, sum(per))))
    per = [sum(counts[st, s] for st in statuses) for s in splits]
    lines.append(f"{'all':14}" + "".join(f"{n:8d}" for n in (*per, sum(per))))
    return "\n".join(lines)
