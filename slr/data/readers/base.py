"""The dataset seam: a reader turns a dataset folder into glosses in label order and, per split,
instances (video file, label, optional frame range, bbox, signer). Everything downstream (clips,
feature stores, datamodule, doctor, test report) sees only that. Also the pieces the readers
share: label assignment with problem counting, the seeded stratified split, gloss files."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from slr.data.wlasl import SPLITS, Instance, SubsetIndex

log = logging.getLogger(__name__)

# what a reader leaves out and counts, as WLASL's missing videos are counted (those are found
# later, by the datamodule: a listed file that is not on disk)
PROBLEMS = (
    "unparsable_rows",  # a row (or file) that does not parse
    "empty_glosses",  # a row with no gloss, or a gloss folder with no video
    "duplicate_ids",  # a video listed again (the first listing is kept)
    "unknown_glosses",  # a video whose gloss is not in the label set (training never saw it)
)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
               "test": "test"}  # fmt: skip


class DatasetFormatError(ValueError):
    """A dataset folder or label file that cannot be read at all."""


class DatasetReader(Protocol):
    """Reads one dataset layout. `read()` returns the glosses in label order and the instances per
    split, whose `file()` is relative to `video_dir`; what it had to leave out is in
    `SubsetIndex.problems`. Raises DatasetFormatError (or FileNotFoundError) when nothing usable
    remains."""

    root: Path
    video_dir: Path
    layout: str  # what data.root must hold, for error messages

    def read(self) -> SubsetIndex: ...

    def name(self, index: SubsetIndex) -> str:
        """A short label for reports: "csv labels.csv", "ASL Citizen", ..."""
        ...


def empty_problems() -> dict[str, list[str]]:
    return {kind: [] for kind in PROBLEMS}


def resolve(root: Path, path: str | Path) -> Path:
    """`path` as given if absolute, else relative to the dataset root."""
    path = Path(path)
    return path if path.is_absolute() else root / path


def read_gloss_list(root: Path, glosses: str | Sequence[str]) -> list[str]:
    """A label order: a file with one gloss per line (relative to root or absolute), or the list
    itself (as a checkpoint records it)."""
    if isinstance(glosses, str):
        path = resolve(root, glosses)
        if not path.is_file():
            raise FileNotFoundError(
                f"data.glosses={glosses}: no file at {path}. Give a text file with one gloss per "
                "line (its order is the label order), or null to sort the training glosses"
            )
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        where = str(path)
    else:
        names, where = [str(g) for g in glosses], "data.glosses"
    seen: set[str] = set()
    repeated = [g for g in names if g in seen or seen.add(g)]
    if repeated:
        raise DatasetFormatError(f"{where}: glosses listed twice: {', '.join(repeated[:10])}")
    if not names:
        raise DatasetFormatError(f"{where}: no glosses")
    return names


def split_name(value: str) -> str:
    """train | val | test from what a label file writes (val also as valid, validation, dev)."""
    split = SPLIT_NAMES.get(value.strip().lower())
    if split is None:
        raise ValueError(f"split {value!r} is not one of train, val, test")
    return split


def stratified_split(
    instances: Sequence[Instance], val_fraction: float, test_fraction: float, seed: int
) -> list[Instance]:
    """Each gloss's videos, sorted by id and shuffled by a generator seeded with (seed, gloss),
    shared out as round(n * fraction) to test and to val (at least one each where the gloss has
    three or more videos and the fraction is > 0), the rest to train: the same files and seed
    always give the same split, and adding a gloss does not move another gloss's videos."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: each must be "
            ">= 0 and together below 1, leaving videos to train on"
        )
    by_gloss: dict[str, list[Instance]] = defaultdict(list)
    for inst in instances:
        by_gloss[inst.gloss].append(inst)
    out = []
    for gloss in sorted(by_gloss):
        group = sorted(by_gloss[gloss], key=lambda i: i.video_id)
        random.Random(f"{seed}:{gloss}").shuffle(group)
        counts = []
        for fraction in (test_fraction, val_fraction):
            k = round(len(group) * fraction)
            if fraction > 0 and k == 0 and len(group) >= 3:
                k = 1
            counts.append(min(k, max(0, len(group) - 1 - sum(counts))))  # one left to train on
        n_test, n_val = counts
        splits = ["test"] * n_test + ["val"] * n_val
        splits += ["train"] * (len(group) - len(splits))
        out += [replace(inst, split=s) for inst, s in zip(group, splits, strict=True)]
    return out


def build_index(
    instances: Sequence[Instance],
    problems: dict[str, list[str]],
    glosses: Sequence[str] | None,
    source: str,
    assigned_splits: bool = False,
) -> SubsetIndex:
    """Label the parsed instances and group them by split.

    Repeated video ids keep their first listing; the label set is `glosses` if given, else the
    training split's glosses, sorted; a video whose gloss is not in it is left out. Each of those
    is recorded in `problems`. Raises DatasetFormatError when no video remains, naming `source`.
    """
    unique, seen = [], set()
    for inst in instances:
        if inst.video_id in seen:
            problems["duplicate_ids"].append(f"{inst.split}: {inst.video_id}")
            continue
        seen.add(inst.video_id)
        unique.append(inst)
    if glosses is None:
        glosses = sorted({i.gloss for i in unique if i.split == "train"})
    glosses = list(glosses)
    if not glosses:
        raise DatasetFormatError(
            f"{source}: no usable training video (of {len(instances)} listed), so there is no "
            f"gloss to learn; {summarize(problems) or 'check the file'}"
        )
    labels = {g: i for i, g in enumerate(glosses)}
    splits: dict[str, list[Instance]] = {s: [] for s in SPLITS}
    for inst in unique:
        label = labels.get(inst.gloss)
        if label is None:
            problems["unknown_glosses"].append(f"{inst.split}: {inst.video_id} ({inst.gloss})")
            continue
        splits[inst.split].append(replace(inst, label=label))
    for kind, items in problems.items():
        if items:
            log.warning("%s: %d %s left out (listed in data_problems.json)", source, len(items),
                        kind.replace("_", " "))  # fmt: skip
    return SubsetIndex(glosses, splits, [], problems, assigned_splits)


def summarize(problems: dict[str, list[str]]) -> str:
    """ "3 unparsable rows, 1 duplicate id" for the kinds that occurred."""
    return ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in problems.items() if v)
