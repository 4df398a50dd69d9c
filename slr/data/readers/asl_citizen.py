"""ASL Citizen (Desai et al., NeurIPS 2023 Datasets and Benchmarks) as released: ROOT/splits/
{train,val,test}.csv with columns Participant ID, Video file, Gloss, ASL-LEX Code, and the videos
in ROOT/videos/. Its splits are signer-disjoint."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from slr.data.readers.base import (
    DatasetFormatError,
    build_index,
    empty_problems,
    read_gloss_list,
)
from slr.data.wlasl import SPLITS, Instance, SubsetIndex

log = logging.getLogger(__name__)

SPLIT_DIR = "splits"
VIDEO_DIR = "videos"
# the release's header; a file whose names differ is read by position, in this order
COLUMNS = ("participant id", "video file", "gloss", "asl-lex code")


class ASLCitizenReader:
    """The release's own splits. Glosses come from the split files, never from file names (some
    names do not match their gloss).

    Args:
        root: the unzipped release (holding splits/ and videos/).
        glosses: label order: a file of glosses, one per line, or the list; None = the training
            split's glosses, sorted.
    """

    layout = f"the unzipped ASL Citizen release ({SPLIT_DIR}/{{train,val,test}}.csv, {VIDEO_DIR}/)"

    def __init__(self, root: str | Path, glosses: str | list[str] | None = None) -> None:
        self.root = Path(root)
        self.video_dir = self.root / VIDEO_DIR
        self.glosses = glosses

    def name(self, index: SubsetIndex) -> str:
        return "ASL Citizen"

    def read(self) -> SubsetIndex:
        problems = empty_problems()
        instances = []
        for split in SPLITS:
            instances += self._read_split(split, problems)
        glosses = None if self.glosses is None else read_gloss_list(self.root, self.glosses)
        return build_index(instances, problems, glosses, str(self.root / SPLIT_DIR))

    def _read_split(self, split: str, problems: dict[str, list[str]]) -> list[Instance]:
        path = self.root / SPLIT_DIR / f"{split}.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"ASL Citizen split file not found: {path}. data.root must be the unzipped "
                f"release, holding {SPLIT_DIR}/train.csv, val.csv, test.csv and {VIDEO_DIR}/"
            )
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise DatasetFormatError(f"{path} is empty: expected a header and one row per video")
        header = [c.strip().lower() for c in rows[0]]
        if all(c in header for c in COLUMNS):
            where = [header.index(c) for c in COLUMNS]
        else:
            where = list(range(len(COLUMNS)))
            log.warning("%s: header %s is not the release's %s; reading columns by position",
                        path.name, rows[0], list(COLUMNS))  # fmt: skip
        out = []
        for line, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(where):
                problems["unparsable_rows"].append(f"{path.name}:{line}: {len(row)} cells")
                continue
            signer, video, gloss = (row[i].strip() for i in where[:3])
            if not video:
                problems["unparsable_rows"].append(f"{path.name}:{line}: no video file")
                continue
            if not gloss:
                problems["empty_glosses"].append(f"{path.name}:{line}: {video}")
                continue
            out.append(
                Instance(
                    video_id=video,
                    label=-1,  # set by build_index
                    gloss=gloss,
                    split=split,
                    path=video,
                    signer=signer or None,
                )
            )
        return out
