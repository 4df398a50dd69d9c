"""The WLASL index (`WLASL_v0.3.json`) and official split files (`nslt_N.json`): which videos
make up a subset and split, with which label. Labels are gloss positions in the index, in file
order."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

log = logging.getLogger(__name__)

INDEX_FILE = "WLASL_v0.3.json"
VIDEO_DIR = "videos"
SPLITS = ("train", "val", "test")
SUBSETS = (100, 300, 1000, 2000)


class WLASLFormatError(ValueError):
    """An index or split file that does not have the WLASL format."""


@dataclass(frozen=True)
class Instance:
    """One video of one sign, as the index describes it."""

    video_id: str
    label: int
    gloss: str
    split: str
    frame_start: int = 1  # 1-based, counted at `fps`
    frame_end: int = -1  # inclusive; -1 = to the end of the video
    bbox: tuple[int, int, int, int] | None = None  # x1, y1, x2, y2 in source pixels
    fps: float = 25.0  # the rate frame_start/frame_end are counted at (always 25 in WLASL)
    path: str | None = None  # file relative to the reader's video_dir; None = <video_id>.mp4
    signer: str | None = None  # who signs it, where the dataset says (per-signer accuracy)

    def file(self) -> str:
        """The video file, relative to the reader's video folder (or absolute)."""
        return self.path or f"{self.video_id}.mp4"

    def time_range(self) -> tuple[float, float | None]:
        """[start, stop) in seconds, so it maps onto any video's own frame rate; stop None = end."""
        start = (self.frame_start - 1) / self.fps
        return start, None if self.frame_end == -1 else self.frame_end / self.fps


@dataclass
class SubsetIndex:
    """The glosses of a subset and its instances per split."""

    glosses: list[str]
    splits: dict[str, list[Instance]]
    # ids a split file lists that the index lacks (the nslt files predate WLASL_v0.3.json)
    unknown_ids: list[str] = field(default_factory=list)
    # what other readers left out, by kind (slr.data.readers.base.PROBLEMS): kind -> descriptions
    problems: dict[str, list[str]] = field(default_factory=dict)
    assigned_splits: bool = False  # the splits were drawn by a seeded split, not given


def load_index(path: str | Path) -> list[dict]:
    """Read and shape-check `WLASL_v0.3.json`: a list of {"gloss": str, "instances": [...]}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"WLASL index not found: {path}. Expected ROOT/{INDEX_FILE} (set data.root=ROOT)."
        )
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise WLASLFormatError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(entries, list):
        raise WLASLFormatError(f"{path}: expected a JSON list of glosses, got {type(entries)}")
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("gloss"), str)
            and isinstance(entry.get("instances"), list)
        ):
            raise WLASLFormatError(
                f"{path}: entry {i} must be an object with a 'gloss' string and an 'instances' list"
            )
    return entries


def _parse_instance(raw: object, label: int, gloss: str, where: str) -> Instance:
    if not isinstance(raw, dict):
        raise WLASLFormatError(f"{where}: an instance must be an object, got {raw!r}")
    try:
        video_id = str(raw["video_id"])
        split = raw["split"]
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        bbox = raw.get("bbox")
        if bbox is not None:
            if len(bbox) != 4:
                raise ValueError(f"bbox {bbox!r} is not [x1, y1, x2, y2]")
            bbox = tuple(int(v) for v in bbox)
        frame_start, frame_end = int(raw.get("frame_start", 1)), int(raw.get("frame_end", -1))
        if frame_start < 1 or (frame_end != -1 and frame_end < frame_start):
            raise ValueError(f"frame range [{frame_start}, {frame_end}] is invalid")
        fps = float(raw.get("fps", 25))
    except (KeyError, TypeError, ValueError) as e:
        raise WLASLFormatError(f"{where}: malformed instance ({e!r}): {raw!r}") from e
    return Instance(video_id, label, gloss, split, frame_start, frame_end, bbox, fps)


def read_subset(
    index_path: str | Path, subset: int | None, split_file: str | Path | None = None
) -> SubsetIndex:
    """Select the first `subset` glosses of the index (None = all) and group their instances by
    split. With an official `nslt_N.json` split file, its ids and splits define the subset instead;
    ids it lists that the index lacks are skipped and counted in `unknown_ids`.
    """
    entries = load_index(index_path)
    if subset is not None:
        if subset not in SUBSETS:
            raise ValueError(
                f"data.subset={subset} is not a WLASL subset: use one of {SUBSETS}, "
                "or null for every gloss of the index"
            )
        if subset > len(entries):
            raise ValueError(
                f"data.subset={subset} but {index_path} has only {len(entries)} glosses: "
                "use a smaller subset, or data.subset=null for all of them"
            )
        entries = entries[:subset]
    glosses = [e["gloss"] for e in entries]
    instances = [
        _parse_instance(raw, label, e["gloss"], f"{index_path}: gloss {label} {e['gloss']!r}")
        for label, e in enumerate(entries)
        for raw in e["instances"]
    ]
    _refuse_shared_ids(instances, index_path)
    unknown: list[str] = []
    if split_file is not None:
        instances, unknown = _apply_split_file(instances, Path(split_file), len(glosses))
    splits: dict[str, list[Instance]] = {s: [] for s in SPLITS}
    for inst in instances:
        splits[inst.split].append(inst)
    return SubsetIndex(glosses, splits, unknown)


def _refuse_shared_ids(instances: Sequence[Instance], index_path: str | Path) -> None:
    """A video id listed under two glosses would be trained under both labels."""
    seen: dict[str, Instance] = {}
    for inst in instances:
        other = seen.setdefault(inst.video_id, inst)
        if other is not inst:
            raise WLASLFormatError(
                f"{index_path}: video {inst.video_id} is listed under gloss {other.label} "
                f"{other.gloss!r} ({other.split}) and gloss {inst.label} {inst.gloss!r} "
                f"({inst.split}); keep one entry (each video is one sign, of one label)"
            )


def _apply_split_file(
    instances: Sequence[Instance], path: Path, num_classes: int
) -> tuple[list[Instance], list[str]]:
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"data.split_file not found: {path}") from e
    except json.JSONDecodeError as e:
        raise WLASLFormatError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(table, dict):
        raise WLASLFormatError(f"{path}: expected {{video_id: {{subset, action}}}}")
    by_id = {inst.video_id: inst for inst in instances}
    selected, unknown = [], []
    for video_id, entry in table.items():
        try:
            split, label = entry["subset"], int(entry["action"][0])
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise WLASLFormatError(f"{path}: malformed entry for {video_id}: {entry!r}") from e
        if label >= num_classes:
            raise WLASLFormatError(
                f"{path}: {video_id} has label {label} but the subset has {num_classes} glosses; "
                "does data.subset match the split file?"
            )
        inst = by_id.get(video_id)
        if inst is None:
            unknown.append(video_id)
            continue
        if inst.label != label:
            raise WLASLFormatError(
                f"{path}: {video_id} has label {label}, the index says {inst.label} ({inst.gloss})"
            )
        if split not in SPLITS:
            raise WLASLFormatError(f"{path}: {video_id} has split {split!r}, not one of {SPLITS}")
        selected.append(replace(inst, split=split))
    if unknown:
        log.warning("%s lists %d video ids the index lacks; skipped", path.name, len(unknown))
    return selected, unknown
