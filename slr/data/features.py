"""Precomputed backbone features: the frozen CNN's output per frame, stored once on disk (float16,
memory-mapped) and read by every later epoch and every run of a sweep, which then neither decode
video nor run the CNN. A store is keyed by everything that changes its contents."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from slr.data.dataset import ClipDataset, Failed, Sample, collate_clips
from slr.data.feature_augment import FeatureAugment
from slr.data.files import atomic_write_text

log = logging.getLogger(__name__)

# bump when what a store holds, or how it is computed, changes (3: truncated clips left
# out, display rotation applied)
FORMAT_VERSION = 3
Encoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B,T,3,S,S), (B,) -> (B,T,D)


def module_digest(module: torch.nn.Module) -> str:
    """A hash of every parameter and buffer (unsaved ones too, such as the encoder's input
    mean/std) and of the numerics a module declares (`numerics`: bf16, pooling): what a
    backbone computes."""
    numerics = getattr(module, "numerics", f"bf16={getattr(module, 'bf16', False)}")
    h = hashlib.sha256(numerics.encode())
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def file_fingerprint(path: Path, block: int = 1 << 12) -> str:
    """A video file's identity by content: its size and a hash of its first and last `block`
    bytes (a container's header and index sit at the ends, so re-encoding or cutting a file
    changes them). Not its mtime: a dataset copied to a new disk or to a node's scratch keeps
    its stores. Two small reads per file."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(block))
        if size > block:
            f.seek(max(block, size - block))
            h.update(f.read(block))
    return h.hexdigest()


def store_key(dataset: ClipDataset, views: int, encoder_digest: str) -> str:
    """Everything that changes a store's contents: backbone, preprocessing, sampling, views,
    each instance's label, bbox and frame range, and each video file's content
    (`file_fingerprint`)."""
    files = []
    for inst in dataset.instances:
        instance = (inst.video_id, inst.label, inst.bbox, inst.time_range())
        files.append((*instance, file_fingerprint(dataset.path(inst))))
    spec = {
        "version": FORMAT_VERSION,
        "encoder": encoder_digest,
        "transform": dataset.transform.__dict__,
        "num_frames": dataset.num_frames,
        "trimmed": dataset.trimmed,
        "truncated": dataset.truncated,
        "views": views,
        "files": files,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


class DamagedStore(ValueError):
    """A store folder whose files do not add up (cut short, overwritten, half deleted)."""


@dataclass
class FeatureStore:
    """An opened store. Row `i * views + v` holds view v of video `video_ids[i]`."""

    path: Path
    video_ids: list[str]
    views: int
    features: np.ndarray  # (N * views, T, D) float16, memory-mapped read-only
    lengths: np.ndarray  # (N * views,) int16, real frames per row; 0 where the video failed
    failed: dict[str, str]  # video_id -> decode error

    @classmethod
    def open(cls, path: Path) -> FeatureStore:
        """Raises DamagedStore when the files are unreadable or do not match each other."""
        try:
            meta = json.loads((path / "meta.json").read_text())
            store = cls(
                path=path,
                video_ids=meta["video_ids"],
                views=meta["views"],
                features=np.load(path / "features.npy", mmap_mode="r"),
                lengths=np.load(path / "lengths.npy"),
                failed=meta["failed"],
            )
        except (OSError, ValueError, KeyError, TypeError, EOFError) as e:  # cut .npy: ValueError
            raise DamagedStore(f"feature store {path} is damaged ({type(e).__name__}: {e})") from e
        rows = len(store.video_ids) * store.views
        if store.features.shape[:1] != (rows,) or store.lengths.shape != (rows,):
            raise DamagedStore(
                f"feature store {path} is damaged: {rows} rows listed, features "
                f"{store.features.shape}, lengths {store.lengths.shape}"
            )
        return store


class _Views(Dataset):
    """View v of clip i, its randomness seeded by (i, v) so a rebuilt store is identical."""

    def __init__(self, clips: ClipDataset, views: int) -> None:
        self.clips, self.views = clips, views

    def __len__(self) -> int:
        return len(self.clips) * self.views

    def __getitem__(self, row: int) -> Sample | Failed:
        # not warned per view: the store names each failed clip once
        start = time.perf_counter()
        item = self.clips.get(row // self.views, torch.Generator().manual_seed(row), warn=False)
        if "error" not in item:
            item["row"] = torch.tensor(row)  # where it goes: failed clips leave their rows empty
            # decode + crop + resize, in whichever process loaded it (extraction's timing)
            item["decode_seconds"] = torch.tensor(time.perf_counter() - start, dtype=torch.float64)
        return item


def build_store(
    clips: ClipDataset,
    encode: Encoder,
    encoder_digest: str,
    cache_dir: str | Path,
    views: int = 1,
    batch_size: int = 8,
    num_workers: int = 2,
    desc: str = "features",
) -> FeatureStore:
    """Open the store for these clips, building it first if absent.

    Safe for runs that start together: one builds under a lock into a temporary folder renamed
    into place when complete, the others wait and then open it. A store whose files do not add
    up is rebuilt; clips that failed when it was built are tried again (a read failure may have
    passed: a file being copied, a network share that dropped out) and added if they decode now.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / store_key(clips, views, encoder_digest)
    store = _try_open(path, warn=False)  # a damaged one is named under the lock, below
    if store is not None and not store.failed:
        return store
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "w")  # noqa: SIM115 (held for the block below)
    except OSError as e:
        raise OSError(
            f"data.cache_dir={cache_dir}: cannot write feature stores there ({e}); set "
            "data.cache_dir to a writable folder, or data.features=live"
        ) from e
    with lock:
        _wait_for(lock, path)
        store = _try_open(path)
        if store is None:
            if path.exists():
                shutil.rmtree(path)  # damaged (said so above); we hold the lock
            for stale in cache_dir.glob(f"{path.name}.tmp*"):  # a killed build's; we hold the lock
                shutil.rmtree(stale, ignore_errors=True)
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            try:
                _build(clips, encode, tmp, views, batch_size, num_workers, desc)
                os.replace(tmp, path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        elif store.failed:
            _retry_failed(store, clips, encode, batch_size, num_workers, desc)
    return FeatureStore.open(path)


def _try_open(path: Path, warn: bool = True) -> FeatureStore | None:
    """The complete store at `path`; None if absent or damaged (said so; the caller rebuilds)."""
    if not (path / "meta.json").is_file():
        return None
    try:
        return FeatureStore.open(path)
    except DamagedStore as e:
        if warn:
            log.warning("%s; rebuilding it", e)
        return None


def _wait_for(lock, path: Path) -> None:
    """Take the store's lock, saying so when another process holds it (it is building)."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("waiting for another process building the feature store %s (lock %s)",
                 path, lock.name)  # fmt: skip
        start = time.perf_counter()
        fcntl.flock(lock, fcntl.LOCK_EX)
        log.info("feature store lock free after %.0fs", time.perf_counter() - start)


@torch.inference_mode()
def _retry_failed(
    store: FeatureStore,
    clips: ClipDataset,
    encode: Encoder,
    batch_size: int,
    num_workers: int,
    desc: str,
) -> None:
    """Decode the store's failed clips again; write the ones that decode now into their rows
    (rows no reader uses while the clip is listed failed) and then take them off the list."""
    views, index = store.views, {vid: i for i, vid in enumerate(store.video_ids)}
    rows = [index[v] * views + k for v in store.failed if v in index for k in range(views)]
    log.info("%s: retrying the %d clips that failed when the store was built", desc,
             len(store.failed))  # fmt: skip
    features = None
    if store.features.shape[-1] > 0:  # an all-failed store has no feature width yet
        features = np.load(store.path / "features.npy", mmap_mode="r+")
    lengths, failed = store.lengths.copy(), dict(store.failed)
    loader = DataLoader(
        Subset(_Views(clips, views), rows),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_clips,
        generator=torch.Generator(),
    )
    recovered, errors = set(), {}
    for batch in loader:
        errors.update(batch["errors"])
        if not batch["video_id"]:
            continue
        if features is None:  # nothing to write into: build the whole store again
            log.info("%s: a clip of an all-failed store decodes now; rebuilding it", desc)
            shutil.rmtree(store.path)
            tmp = store.path.with_name(f"{store.path.name}.tmp{os.getpid()}")
            try:
                _build(clips, encode, tmp, views, batch_size, num_workers, desc)
                os.replace(tmp, store.path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return
        out = encode(batch["frames"], batch["length"])  # (B, T, D)
        at = batch["row"].numpy()
        features[at] = out.to(torch.float16).cpu().numpy()
        lengths[at] = batch["length"].numpy()
        recovered.update(batch["video_id"])
    recovered -= set(errors)  # a clip counts only when every view decodes
    if not recovered:
        return
    features.flush()
    tmp_lengths = store.path / f"lengths.tmp{os.getpid()}.npy"
    np.save(tmp_lengths, lengths)
    os.replace(tmp_lengths, store.path / "lengths.npy")
    meta = json.loads((store.path / "meta.json").read_text())
    meta["failed"] = {v: e for v, e in failed.items() if v not in recovered}
    atomic_write_text(store.path / "meta.json", json.dumps(meta))  # last: the list readers trust
    log.info("%s: %d clips that had failed decode now and were added: %s", desc,
             len(recovered), ", ".join(sorted(recovered)))  # fmt: skip


@torch.inference_mode()
def _build(
    clips: ClipDataset,
    encode: Encoder,
    tmp: Path,
    views: int,
    batch_size: int,
    num_workers: int,
    desc: str,
) -> None:
    """Write a complete store into the folder `tmp`."""
    tmp.mkdir()
    rows = len(clips) * views
    features = None
    lengths = np.zeros(rows, dtype=np.int16)
    failed: dict[str, str] = {}
    loader = DataLoader(
        _Views(clips, views),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_clips,
        # its own generator: building a store must not advance the global RNG, or a run's
        # shuffling and dropout would depend on whether the store already existed
        generator=torch.Generator(),
    )
    start = time.perf_counter()
    timing = dict.fromkeys(("wait_seconds", "backbone_seconds", "decode_seconds", "frames"), 0.0)
    with tqdm(total=rows, desc=desc, unit="clip", dynamic_ncols=True) as bar:
        clock = time.perf_counter()
        for batch in loader:
            timing["wait_seconds"] += time.perf_counter() - clock  # not hidden behind encoding
            failed.update(batch["errors"])
            if batch["video_id"]:
                clock = time.perf_counter()
                out = encode(batch["frames"], batch["length"])  # (B, T, D)
                timing["backbone_seconds"] += time.perf_counter() - clock
                timing["decode_seconds"] += batch["decode_seconds"].sum().item()
                timing["frames"] += batch["length"].sum().item()
                if features is None:
                    shape = (rows, *out.shape[1:])
                    features = np.lib.format.open_memmap(
                        tmp / "features.npy", mode="w+", dtype=np.float16, shape=shape
                    )
                index = batch["row"].numpy()
                features[index] = out.to(torch.float16).cpu().numpy()
                lengths[index] = batch["length"].numpy()
            bar.update(len(batch["video_id"]) + len(batch["skipped"]))
            clock = time.perf_counter()
    if features is None:  # every clip failed: an empty store that says so, as live mode would
        features = np.lib.format.open_memmap(
            tmp / "features.npy", mode="w+", dtype=np.float16, shape=(rows, clips.num_frames, 0)
        )
    features.flush()
    del features
    np.save(tmp / "lengths.npy", lengths)
    meta = {
        "video_ids": [inst.video_id for inst in clips.instances],
        "views": views,
        "failed": failed,
        "seconds": round(time.perf_counter() - start, 1),
        "timing": extraction_timing(timing, (len(clips) - len(failed)) * views, num_workers, start),
    }
    (tmp / "meta.json").write_text(json.dumps(meta))  # last: its presence means complete
    ok = len(clips) - len(failed)
    log.info(
        "%s: %d clips x %d views in %.0fs, %d failed to decode",
        desc,
        ok,
        views,
        meta["seconds"],
        len(failed),
    )
    t = meta["timing"]
    log.info("%s: %.2f clips/s, %.1f frames/s end to end; backbone alone %.1f frames/s (%.0fs), "
             "decode %.1f frames/s per process (%.0fs), waited %.0fs on decoding (%d workers)",
             desc, t["clips_per_s"], t["frames_per_s"], t["backbone_frames_per_s"],
             t["backbone_seconds"], t["decode_frames_per_s"], t["decode_seconds"],
             t["wait_seconds"], num_workers)  # fmt: skip


def extraction_timing(totals: dict, clips: int, num_workers: int, start: float) -> dict:
    """Rates of one store build since `start`: end to end, backbone alone (main process), decode
    alone (summed over the processes that decoded, so per process), and the time the backbone
    waited for decoded clips."""
    seconds, frames = time.perf_counter() - start, int(totals["frames"])

    def per(work: float, time_s: float) -> float:
        return round(work / time_s, 2) if time_s > 0 else 0.0

    return {
        "num_workers": num_workers,
        "clips": clips,
        "frames": frames,
        "seconds": round(seconds, 2),
        **{k: round(totals[k], 2) for k in ("wait_seconds", "backbone_seconds", "decode_seconds")},
        "clips_per_s": per(clips, seconds),
        "frames_per_s": per(frames, seconds),
        "backbone_frames_per_s": per(frames, totals["backbone_seconds"]),
        "decode_frames_per_s": per(frames, totals["decode_seconds"]),
    }


class FeatureDataset(Dataset):
    """Clips as cached features: a random one of the store's views per access when training,
    the single fixed view otherwise. A video that failed to decode at build time yields a
    `Failed` record, as in live mode, so batches skip and count it by name."""

    def __init__(
        self,
        store: FeatureStore,
        clips: ClipDataset,
        train: bool,
        augment: FeatureAugment | None = None,
    ) -> None:
        self.store, self.train = store, train
        self.augment = augment if train and augment is not None and augment.active else None
        self.instances = clips.instances
        self.rows = {vid: i for i, vid in enumerate(store.video_ids)}
        for video_id, error in store.failed.items():
            log.warning("skipping video %s (failed to decode when cached): %s", video_id, error)

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, i: int) -> Sample | Failed:
        inst = self.instances[i]
        if inst.video_id in self.store.failed:
            return Failed(video_id=inst.video_id, error=self.store.failed[inst.video_id])
        view = int(torch.randint(self.store.views, ())) if self.train else 0
        row = self.rows[inst.video_id] * self.store.views + view
        features = torch.from_numpy(self.store.features[row].astype(np.float32))
        length = int(self.store.lengths[row])
        if self.augment is not None:
            features, length = self.augment(features, length)
        return Sample(
            features=features,
            length=torch.tensor(length),
            label=torch.tensor(inst.label),
            video_id=inst.video_id,
        )
