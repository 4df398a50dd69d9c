"""Which data a number was computed on: nominal against available videos per subset and split,
glosses left with no video, files that do not decode. Used by slr.doctor over every protocol (or,
for the other readers, the one their files define), and by slr.train / slr.test for the run's
own."""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from slr.acquisition.trim import probe
from slr.data.readers.base import DatasetReader
from slr.data.summary import split_summary, summary_lines  # noqa: F401  (doctor's table)
from slr.data.video import DECODE_ERRORS, DecodeError, open_video
from slr.data.wlasl import (
    INDEX_FILE,
    SPLITS,
    SUBSETS,
    VIDEO_DIR,
    load_index,
    read_subset,
)

log = logging.getLogger(__name__)

CHECKS = ("none", "open", "full")


def protocols(root: Path, num_glosses: int) -> dict[str, tuple[int | None, Path | None]]:
    """The standard ways to read ROOT: WLASL100/300/1000/2000 with the index's splits (those the
    index is big enough for, or all glosses of a smaller one), and each nslt_N.json under ROOT
    (the I3D baseline's splits) with subset N."""
    found: dict[str, tuple[int | None, Path | None]] = {
        f"WLASL{n}": (n, None) for n in SUBSETS if n <= num_glosses
    }
    if num_glosses not in SUBSETS:
        found[f"all {num_glosses} glosses"] = (None, None)
    for path in sorted(root.glob("nslt_*.json"), key=lambda p: (len(p.name), p.name)):
        match = re.fullmatch(r"nslt_(\d+)\.json", path.name)
        if match and int(match.group(1)) in SUBSETS and int(match.group(1)) <= num_glosses:
            found[f"WLASL{match.group(1)} {path.name}"] = (int(match.group(1)), path)
    return found


def readable(path: Path, check: str) -> str:
    """ "" if `path` passes the check, else why not. open: it opens and its first frame decodes;
    full: every frame decodes (as slr.prepare probes); none: it exists."""
    if check == "none":
        return ""
    try:
        if check == "full":
            probe(path)
            return ""
        with open_video(path) as container:
            if not container.streams.video:
                return "no video stream"
            for frame in container.decode(video=0):
                frame.to_ndarray(format="rgb24")
                return ""
            return "no frames decode"
    except (DecodeError, *DECODE_ERRORS) as e:
        return f"{type(e).__name__}: {e}"


def scan(root: str | Path, check: str = "open", workers: int = 4) -> dict:
    """The health report of ROOT against its index, for every protocol `protocols` finds.

    Args:
        root: the dataset folder (WLASL_v0.3.json, videos/, optional nslt_N.json).
        check: how hard to look at each video: none | open | full (see `readable`).
        workers: files checked at once.
    """
    if check not in CHECKS:
        raise ValueError(f"check={check!r}: use one of {CHECKS}")
    root = Path(root)
    entries = load_index(root / INDEX_FILE)
    video_dir = root / VIDEO_DIR
    on_disk = {p.stem for p in video_dir.glob("*.mp4")} if video_dir.is_dir() else set()
    indexed = {str(i["video_id"]) for e in entries for i in e["instances"]}
    to_check = sorted(on_disk & indexed)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        verdicts = pool.map(lambda v: readable(video_dir / f"{v}.mp4", check), to_check)
        unreadable = {v: why for v, why in zip(to_check, verdicts, strict=True) if why}
    usable = (on_disk & indexed) - set(unreadable)
    report: dict = {
        "root": str(root),
        "check": check,
        "index_glosses": len(entries),
        "index_videos": len(indexed),
        "video_files": len(on_disk),
        "not_in_index": sorted(on_disk - indexed),
        "unreadable": unreadable,
        "protocols": {},
    }
    for name, (subset, split_file) in protocols(root, len(entries)).items():
        index = read_subset(root / INDEX_FILE, subset, split_file)
        report["protocols"][name] = {
            "subset": subset,
            "split_file": split_file.name if split_file else None,
            **split_summary(index, lambda i: i.video_id in usable),
        }
    return report


def scan_reader(reader: DatasetReader, check: str = "open", workers: int = 4) -> dict:
    """The health report of a non-WLASL dataset: the videos its reader lists, which of them are
    missing or do not pass `check`, and what the reader left out (unparsable rows, duplicates,
    empty or unknown glosses), as one protocol named by the reader."""
    if check not in CHECKS:
        raise ValueError(f"check={check!r}: use one of {CHECKS}")
    index = reader.read()
    listed = {i.video_id: reader.video_dir / i.file() for s in SPLITS for i in index.splits[s]}
    on_disk = sorted(v for v, path in listed.items() if path.is_file())
    with ThreadPoolExecutor(max(1, workers)) as pool:
        verdicts = pool.map(lambda v: readable(listed[v], check), on_disk)
        unreadable = {v: why for v, why in zip(on_disk, verdicts, strict=True) if why}
    usable = set(on_disk) - set(unreadable)
    name = reader.name(index)
    return {
        "root": str(reader.root),
        "reader": name,
        "video_dir": str(reader.video_dir),
        "check": check,
        "index_glosses": len(index.glosses),
        "index_videos": len(listed),
        "video_files": len(on_disk),
        "missing": sorted(set(listed) - set(on_disk)),
        "unreadable": unreadable,
        "problems": {k: v for k, v in index.problems.items() if v},
        "assigned_splits": index.assigned_splits,
        "protocols": {name: split_summary(index, lambda i: i.video_id in usable)},
    }
