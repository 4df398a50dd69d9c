"""ROOT/raw/ -> ROOT/videos/<video_id>.mp4, the layout the loader reads: cut each instance's frame
range, re-encode what is not an mp4, probe every result, and move failures to ROOT/quarantine/."""

from __future__ import annotations

import logging
import os
import shutil
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from slr.acquisition import download as dl
from slr.acquisition.manifest import Manifest, status_table, writable_folder, write_missing
from slr.acquisition.trim import Cut, cut_video, pick_encoder, probe
from slr.data.video import DECODE_ERRORS, DecodeError, open_video
from slr.data.wlasl import SPLITS, VIDEO_DIR, Instance

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
MANIFEST_FILE = "prepare.csv"
COLUMNS = (
    *("video_id", "gloss", "label", "split", "source", "status", "reason", "raw"),
    *("frames", "fps", "width", "height", "bytes"),  # of the prepared clip
)
OK = "ok"
NO_RAW = "no_raw"  # nothing downloaded (the reason says the download's status)
QUARANTINED = "quarantined"  # moved to ROOT/quarantine/ (the reason says why)


@dataclass
class Outcome:
    inst: Instance
    status: str
    reason: str = ""
    frames: int | str = ""
    fps: float | str = ""
    width: int | str = ""
    height: int | str = ""
    bytes: int | str = ""


def _is_mp4(path: Path) -> bool:
    if path.suffix.lower() not in (".mp4", ".m4v"):
        return False
    try:
        with open_video(path) as container:
            return "mp4" in container.format.name
    except DECODE_ERRORS:
        return False


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the filesystem allows (no second copy of the bytes), else a copy."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _move(src: Path, dst: Path) -> None:
    """Rename over dst; rename() is a no-op when both names link one file, so unlink dst first."""
    dst.unlink(missing_ok=True)
    os.replace(src, dst)


def _bbox_note(inst: Instance, width: int, height: int) -> str:
    if inst.bbox is None:
        return ""
    x1, y1, x2, y2 = inst.bbox
    if x2 <= width + 2 and y2 <= height + 2:
        return ""
    return (
        f"bbox {list(inst.bbox)} reaches past the {width}x{height} frame "
        "(was the source annotated at another resolution?)"
    )


def prepare_source(
    raw: Path, insts: list[Instance], video_dir: Path, quarantine: Path, codec: str
) -> list[Outcome]:
    """Make videos/<video_id>.mp4 for every instance cut from one raw file."""
    cuts = [Cut(inst, video_dir / f".{inst.video_id}.tmp.mp4") for inst in insts]
    whole = [c for c in cuts if c.inst.frame_start == 1 and c.inst.frame_end == -1]
    if whole and len(whole) == len(cuts) and _is_mp4(raw):
        for cut in cuts:  # already an mp4 of just this sign: keep the bytes as they are
            _link_or_copy(raw, cut.path)
    else:
        cut_video(raw, cuts, codec)
    outcomes = []
    for cut in cuts:
        inst, reason = cut.inst, cut.error
        if not reason:
            try:
                result = probe(cut.path, expected=cut.written or None)
            except (DecodeError, *DECODE_ERRORS) as e:
                reason = f"probe failed: {e}"
        if reason:
            (video_dir / f"{inst.video_id}.mp4").unlink(missing_ok=True)  # an older one, if forced
            outcomes.append(_quarantine(inst, cut.path, raw, quarantine, reason))
            continue
        final = video_dir / f"{inst.video_id}.mp4"
        _move(cut.path, final)
        notes = (cut.clamped, _bbox_note(inst, result.width, result.height))
        note = "; ".join(n for n in notes if n)
        outcomes.append(
            Outcome(
                inst,
                OK,
                note,
                result.frames,
                round(result.fps, 3),
                result.width,
                result.height,
                final.stat().st_size,
            )
        )
    return outcomes


def _quarantine(
    inst: Instance, tmp: Path | None, raw: Path, quarantine: Path, reason: str
) -> Outcome:
    """Move the failed output (or, with none, a link to the raw file) to quarantine/<id>.<ext>."""
    quarantine.mkdir(parents=True, exist_ok=True)
    if tmp is not None and tmp.is_file():
        _move(tmp, quarantine / f"{inst.video_id}.mp4")
        for stale in quarantine.glob(f"{inst.video_id}.*"):
            if stale.name != f"{inst.video_id}.mp4":
                stale.unlink()
    else:
        for stale in quarantine.glob(f"{inst.video_id}.*"):
            stale.unlink()
        _link_or_copy(raw, quarantine / f"{inst.video_id}{raw.suffix}")
    log.warning("%s quarantined (%s): %s", inst.video_id, raw.name, reason)
    return Outcome(inst, QUARANTINED, reason)


def _raw_files(root: Path, entries: list[dict]) -> dict[str, Path]:
    """video_id -> its raw file, by slr.download's naming; the official kit's (a YouTube video
    as raw/<youtube id>.*) is understood too."""
    raw_dir = root / dl.RAW_DIR
    if not raw_dir.is_dir():
        return {}
    existing = dl.complete_files(raw_dir)
    found = {}
    for src in dl.group_sources(entries).values():
        path = existing.get(src.key)
        if path is None and src.key.startswith("yt_"):
            path = existing.get(src.key.removeprefix("yt_"))
        for video_id in src.video_ids:
            path_v = path or existing.get(video_id)
            if path_v is not None:
                found[video_id] = path_v
    return found


def prepare(
    root: str | Path,
    subset: int | None = 100,
    split_file: str | Path | None = None,
    workers: int | None = None,
    codec: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, dict[str, str]]:
    """Turn the subset's raw downloads into ROOT/videos/<video_id>.mp4; keep ROOT/prepare.csv and
    ROOT/missing.txt up to date. Returns the manifest rows of the subset, by video_id.

    Args:
        root: the dataset folder (WLASL_v0.3.json, raw/).
        subset, split_file: which videos, as in the data config (None = every gloss).
        workers: source files worked on at once; None = one per CPU core.
        codec: the encoder for cut and converted videos; None = libx264 if PyAV has it, else
            another H.264 encoder, else mpeg4.
        force: redo videos that already exist (otherwise they are kept as they are).
        progress: show a progress bar.
    """
    root = Path(root)
    entries, instances = dl.read_scope(root, subset, split_file)
    sources = {str(r["video_id"]): r.get("source", "") for e in entries for r in e["instances"]}
    video_dir, quarantine = root / VIDEO_DIR, root / QUARANTINE_DIR
    for folder in (root, video_dir):
        writable_folder(folder, "slr.prepare")
    for stale in video_dir.glob(".*.tmp.mp4"):  # left by a killed run
        stale.unlink()
    codec = codec or pick_encoder()
    manifest = Manifest(root / MANIFEST_FILE, COLUMNS)
    downloads = Manifest(root / dl.MANIFEST_FILE, dl.COLUMNS)
    raw_files = _raw_files(root, entries)

    by_raw: dict[Path, list[Instance]] = defaultdict(list)
    for video_id, inst in instances.items():
        manifest.update(
            video_id,
            gloss=inst.gloss,
            label=inst.label,
            split=inst.split,
            source=sources.get(video_id, ""),
        )
        raw = raw_files.get(video_id)
        manifest.update(video_id, raw=raw.name if raw else "")
        video = video_dir / f"{video_id}.mp4"
        if video.is_file() and not force and manifest.get(video_id)["status"] == OK:
            continue
        if video.is_file() and (raw is None or not force):
            by_raw[video].append(inst)  # made some other way, or its source is gone: probe it
        elif raw is None:
            row = downloads.get(video_id)
            why = f"download: {row['status']} ({row['reason']})" if row else "not downloaded"
            manifest.update(video_id, **_cells(Outcome(inst, NO_RAW, why)))
        else:
            by_raw[raw].append(inst)
    log.info(
        "%d videos: %d to prepare from %d source files (encoder %s)",
        len(instances),
        sum(len(v) for v in by_raw.values()),
        len(by_raw),
        codec,
    )

    def work(raw: Path, insts: list[Instance]) -> list[Outcome]:
        try:
            if raw.parent == video_dir:
                return [_adopt(raw, insts[0], quarantine)]
            return prepare_source(raw, insts, video_dir, quarantine, codec)
        except Exception as e:  # one odd file must not end a run over thousands
            log.exception("unexpected failure on %s", raw)
            return [_quarantine(i, None, raw, quarantine, repr(e)) for i in insts]

    try:
        total = sum(len(v) for v in by_raw.values())
        show = progress and total > 0
        with (
            tqdm(total=total, desc="preparing", unit="video", disable=not show) as bar,
            ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool,
        ):
            futures = [pool.submit(work, raw, insts) for raw, insts in by_raw.items()]
            for future in as_completed(futures):
                for outcome in future.result():
                    manifest.update(outcome.inst.video_id, **_cells(outcome))
                    bar.update()
    finally:
        manifest.flush()
    rows = {v: manifest.get(v) for v in instances}
    missing = write_missing(root, (v for v, r in rows.items() if r["status"] != OK))
    log.info("prepare summary (videos):\n%s", status_table(rows.values(), SPLITS))
    log.info("manifest: %s; %s lists the videos without a usable clip", manifest.path, missing)
    return rows


def _adopt(path: Path, inst: Instance, quarantine: Path) -> Outcome:
    """A videos/<id>.mp4 this tool did not write (an earlier kit, a copy): probe and keep it."""
    try:
        result = probe(path)
    except (DecodeError, *DECODE_ERRORS) as e:
        tmp = path.with_name(f".{inst.video_id}.tmp.mp4")
        _move(path, tmp)
        return _quarantine(inst, tmp, path, quarantine, f"probe failed: {e}")
    note = _bbox_note(inst, result.width, result.height)
    fps = round(result.fps, 3)
    size = path.stat().st_size
    return Outcome(inst, OK, note, result.frames, fps, result.width, result.height, size)


def _cells(outcome: Outcome) -> dict[str, object]:
    return {
        "status": outcome.status,
        "reason": outcome.reason,
        "frames": outcome.frames,
        "fps": outcome.fps,
        "width": outcome.width,
        "height": outcome.height,
        "bytes": outcome.bytes,
    }
