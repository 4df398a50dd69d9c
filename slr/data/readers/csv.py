"""A folder of videos with one CSV that labels them: `path,gloss[,split][,start,end]
[,x1,y1,x2,y2][,signer]` with a header row naming the columns, any order. Without a split column
the videos get a seeded stratified split."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from slr.data.readers.base import (
    DatasetFormatError,
    build_index,
    empty_problems,
    read_gloss_list,
    resolve,
    split_name,
    stratified_split,
)
from slr.data.wlasl import Instance, SubsetIndex

log = logging.getLogger(__name__)

REQUIRED = ("path", "gloss")
OPTIONAL = ("split", "start", "end", "x1", "y1", "x2", "y2", "signer")
BBOX = ("x1", "y1", "x2", "y2")
TIME_UNITS = ("seconds", "frames")
MS = 1000.0  # times in seconds are kept as 1-based frames at 1000 fps: exact to the millisecond


class CSVReader:
    """The videos a CSV lists, paths relative to root (or absolute).

    Args:
        root: the dataset folder.
        csv: the label file, relative to root or absolute.
        glosses: label order: a file of glosses, one per line, or the list; None = the training
            videos' glosses, sorted.
        val_fraction, test_fraction, split_seed: the seeded stratified split used when the CSV
            has no split column (see `stratified_split`).
        time_unit: "seconds" (start/end in seconds, end exclusive) or "frames" (1-based, end
            inclusive, counted at `frame_rate`, as WLASL_v0.3.json counts them).
        frame_rate: the rate frames are counted at.
    """

    layout = "a folder of videos with a CSV (data.csv) of path,gloss[,split]..."

    def __init__(
        self,
        root: str | Path,
        csv: str,
        glosses: str | list[str] | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        time_unit: str = "seconds",
        frame_rate: float = 25.0,
    ) -> None:
        if time_unit not in TIME_UNITS:
            raise ValueError(f"data.time_unit={time_unit!r}: use one of {TIME_UNITS}")
        if frame_rate <= 0:
            raise ValueError(f"data.frame_rate={frame_rate}: must be > 0")
        self.root = Path(root)
        self.video_dir = self.root
        self.csv = resolve(self.root, csv)
        self.glosses = glosses
        self.val_fraction, self.test_fraction, self.split_seed = (
            val_fraction,
            test_fraction,
            split_seed,
        )
        self.time_unit, self.frame_rate = time_unit, frame_rate

    def name(self, index: SubsetIndex) -> str:
        return f"csv {self.csv.name}"

    def read(self) -> SubsetIndex:
        if not self.csv.is_file():
            raise FileNotFoundError(
                f"data.csv: no label file at {self.csv}. Give a CSV with a header row "
                "path,gloss[,split][,start,end][,x1,y1,x2,y2][,signer] (relative to data.root "
                "or absolute)"
            )
        with open(self.csv, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise DatasetFormatError(f"{self.csv} is empty: it needs a header row path,gloss,...")
        columns = self._columns(rows[0])
        problems = empty_problems()
        instances = []
        for line, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue  # blank line
            where = f"{self.csv.name}:{line}"
            if len(row) != len(columns):
                problems["unparsable_rows"].append(
                    f"{where}: {len(row)} cells, the header has {len(columns)}"
                )
                continue
            cells = {c: v.strip() for c, v in zip(columns, row, strict=True)}
            if not cells["gloss"]:
                problems["empty_glosses"].append(f"{where}: {cells['path'] or '(no path)'}")
                continue
            try:
                instances.append(self._instance(cells, "split" in columns))
            except ValueError as e:
                problems["unparsable_rows"].append(f"{where}: {e}")
        assigned = "split" not in columns
        if assigned:
            instances = stratified_split(
                instances, self.val_fraction, self.test_fraction, self.split_seed
            )
        glosses = None if self.glosses is None else read_gloss_list(self.root, self.glosses)
        return build_index(instances, problems, glosses, str(self.csv), assigned)

    def _columns(self, header: list[str]) -> list[str]:
        columns = [c.strip().lower() for c in header]
        missing = [c for c in REQUIRED if c not in columns]
        unknown = [c for c in columns if c not in (*REQUIRED, *OPTIONAL)]
        repeated = {c for c in columns if columns.count(c) > 1}
        present = [c for c in BBOX if c in columns]
        if missing or unknown or repeated or len(present) not in (0, 4):
            raise DatasetFormatError(
                f"{self.csv}: header {header} must name the columns path, gloss and optionally "
                f"{', '.join(OPTIONAL)} (any order; bbox as all four of x1,y1,x2,y2)"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {unknown}" if unknown else "")
                + (f"; repeated {sorted(repeated)}" if repeated else "")
            )
        return columns

    def _instance(self, cells: dict[str, str], has_split: bool) -> Instance:
        path = cells["path"]
        if not path:
            raise ValueError("no path")
        split = split_name(cells["split"]) if has_split else "train"  # drawn later if absent
        frame_start, frame_end, fps = self._frames(cells.get("start", ""), cells.get("end", ""))
        bbox = None
        if any(cells.get(c) for c in BBOX):
            try:
                bbox = tuple(int(round(float(cells[c]))) for c in BBOX)
            except ValueError as e:
                raise ValueError(f"bbox {[cells[c] for c in BBOX]} is not four numbers") from e
            if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
                raise ValueError(f"bbox {list(bbox)} needs x2 > x1 and y2 > y1")
        return Instance(
            video_id=Path(path).as_posix(),
            label=-1,  # set by build_index
            gloss=cells["gloss"],
            split=split,
            frame_start=frame_start,
            frame_end=frame_end,
            bbox=bbox,
            fps=fps,
            path=path,
            signer=cells.get("signer") or None,
        )

    def _frames(self, start: str, end: str) -> tuple[int, int, float]:
        """(frame_start, frame_end, fps) as `Instance` counts them: 1-based, end inclusive."""
        try:
            s = float(start) if start else None
            e = float(end) if end else None
        except ValueError as err:
            raise ValueError(f"start/end {start!r}, {end!r} are not numbers") from err
        if self.time_unit == "seconds":
            if (s is not None and s < 0) or (e is not None and e <= (s or 0)):
                raise ValueError(f"time range [{start}, {end}) s: need 0 <= start < end")
            first = 1 if s is None else round(s * MS) + 1
            return first, -1 if e is None else round(e * MS), MS
        if (s is not None and (s < 1 or s != int(s))) or (e is not None and e != int(e)):
            raise ValueError(f"frames {start!r}, {end!r}: whole numbers, counted from 1")
        first = 1 if s is None else int(s)
        if e is not None and e < first:
            raise ValueError(f"frame range [{start}, {end}]: end before start")
        return first, -1 if e is None else int(e), self.frame_rate
