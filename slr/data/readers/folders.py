"""One folder per gloss: ROOT/<gloss>/<clip>.mp4 (any video suffix), the layout of many small sign
datasets and of first experiments. The splits are drawn by a seeded stratified split."""

from __future__ import annotations

from pathlib import Path

from slr.data.readers.base import (
    VIDEO_SUFFIXES,
    build_index,
    empty_problems,
    read_gloss_list,
    stratified_split,
)
from slr.data.wlasl import Instance, SubsetIndex

CACHE_DIR = "features"  # the datamodule's default feature-store folder under ROOT: not a gloss


class FoldersReader:
    """Every video directly inside ROOT's subfolders, the folder name as its gloss.

    Args:
        root: the dataset folder.
        glosses: label order: a file of glosses, one per line, or the list; None = the training
            videos' glosses, sorted.
        val_fraction, test_fraction, split_seed: see `stratified_split`.
    """

    layout = "a folder with one subfolder of videos per gloss (ROOT/<gloss>/<clip>.mp4)"

    def __init__(
        self,
        root: str | Path,
        glosses: str | list[str] | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.video_dir = self.root
        self.glosses = glosses
        self.val_fraction, self.test_fraction, self.split_seed = (
            val_fraction,
            test_fraction,
            split_seed,
        )

    def name(self, index: SubsetIndex) -> str:
        return f"folders ({len(index.glosses)} glosses)"

    def read(self) -> SubsetIndex:
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root={self.root} does not exist: give {self.layout}")
        problems = empty_problems()
        instances = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_file():
                if entry.suffix.lower() in VIDEO_SUFFIXES:
                    problems["unparsable_rows"].append(f"{entry.name}: not in a gloss folder")
                continue
            videos = sorted(
                p
                for p in entry.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES
            )
            if not videos:
                if entry.name != CACHE_DIR:
                    problems["empty_glosses"].append(f"{entry.name}/: no video files")
                continue
            for video in videos:
                rel = f"{entry.name}/{video.name}"
                instances.append(Instance(rel, -1, entry.name, "train", path=rel))
        instances = stratified_split(
            instances, self.val_fraction, self.test_fraction, self.split_seed
        )
        glosses = None if self.glosses is None else read_gloss_list(self.root, self.glosses)
        return build_index(instances, problems, glosses, str(self.root), assigned_splits=True)
