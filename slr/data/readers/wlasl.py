"""The WLASL reader: ROOT/WLASL_v0.3.json (+ an optional nslt_N.json) and ROOT/videos/<id>.mp4."""

from __future__ import annotations

from pathlib import Path

from slr.data.wlasl import INDEX_FILE, VIDEO_DIR, SubsetIndex, read_subset


class WLASLReader:
    """The first `subset` glosses of the index, in file order (see `slr.data.wlasl.read_subset`).

    Args:
        root: the dataset folder.
        subset: 100 | 300 | 1000 | 2000; None = every gloss of the index.
        split_file: an official nslt_N.json (absolute, or relative to root); None = index splits.
    """

    layout = f"a folder holding {INDEX_FILE} and {VIDEO_DIR}/<video_id>.mp4"

    def __init__(
        self, root: str | Path, subset: int | None = 100, split_file: str | Path | None = None
    ) -> None:
        self.root = Path(root)
        self.video_dir = self.root / VIDEO_DIR
        self.subset = subset
        self.split_file = split_file
        if split_file is not None and not Path(split_file).is_absolute():
            self.split_file = self.root / split_file

    def read(self) -> SubsetIndex:
        return read_subset(self.root / INDEX_FILE, self.subset, self.split_file)

    def name(self, index: SubsetIndex) -> str:
        name = f"WLASL{self.subset}" if self.subset else f"all {len(index.glosses)} glosses"
        if self.split_file:
            name += f" {Path(self.split_file).name}"
        return name
