"""Synthetic WLASL-layout demo dataset: K hand-motion "signs" rendered as small H.264 videos.

Three pairs of classes are time reversals of each other, so only a model that sees frame order
(not one frame, nor the unordered set of frames) can tell the two signs of a pair apart.
"""

import argparse
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np

from slr.data.datamodule import WLASL_TARGET, WLASLDataModule

log = logging.getLogger(__name__)

DEMO_GLOSSES: tuple[str, ...] = (
    "grow", "shrink", "open", "close", "raise", "lower", "wave", "clap"
)  # fmt: skip
INDEX_NAME = "WLASL_v0.3.json"
_MARKER = ".slr_demo"  # marks a directory as ours, so regenerating may replace what is in it
_FPS = 25
_NUM_SIGNERS = 10
_HAND_SCALE = 1.4  # head radii; cartoonishly big hands so they dominate globally pooled features
# The index keys are sorted, as in the official WLASL_v0.3.json.
_FIXED_KEYS = {"fps": _FPS, "frame_end": -1, "frame_start": 1, "source": "demo", "url": ""}

# A hand is (dx, dy, scale, openness, tilt); dx, dy in head radii from the head centre.
Hand = tuple[float, float, float, float, float]
# Each motion maps progress p in [0, 1] and an oscillation w in [-1, 1] to the visible hands.
_MOTIONS: dict[str, Callable[[float, float], list[Hand]]] = {
    "grow": lambda p, w: [(1.2, 3.2, 0.55 + 0.9 * p, 0.6, -1.3)],  # flat hand, fingers inward
    "open": lambda p, w: [(1.2, 2.9, 1.1, p, 0.0)],
    "raise": lambda p, w: [(2.3, 4.6 - 5.0 * p, 1.0, 0.5, 0.0)],
    "wave": lambda p, w: [(2.3, -0.3, 1.0, 1.0, 0.5 * w)],
    "clap": lambda p, w: [
        (-1.3 - 0.8 * w, 3.0, 0.9, 0.7, 0.6),
        (1.3 + 0.8 * w, 3.0, 0.9, 0.7, -0.6),
    ],
}
_REVERSED = {"shrink": "grow", "close": "open", "lower": "raise"}
_SKIN = np.array([[236, 200, 170], [100, 65, 45]])  # lightest, darkest
# Dark, muted clothing: it fills much of the crop, and loud colours would swamp the hands.
_CLOTHES = np.array([[30, 40, 80], [30, 65, 40], [85, 25, 35], [45, 45, 50], [25, 70, 80]])


def _up(angle: np.ndarray | float) -> np.ndarray:
    """Unit vector(s) pointing up in image coordinates, turned clockwise by angle: (..., 2)."""
    return np.stack([np.sin(angle), -np.cos(angle)], -1)


class _Canvas:
    """A float RGB image that also grows a shared bounding box around everything drawn."""

    def __init__(self, img: np.ndarray, box: list[int]) -> None:
        self.img, self.box = img, box

    def ellipses(self, c: np.ndarray, rx: np.ndarray, ry: np.ndarray, angle: np.ndarray,
                 color: np.ndarray) -> None:  # fmt: skip
        """Alpha-blend the union of E anti-aliased ellipses in one colour, in one vectorised pass.

        Centres c are (E, 2); the ry axis of each points along _up(angle).
        """
        c, rx, ry, angle = np.reshape(c, (-1, 2)), *np.atleast_1d(rx, ry, angle)
        cos, sin = np.cos(angle), np.sin(angle)
        ext = np.stack([np.hypot(rx * cos, ry * sin), np.hypot(rx * sin, ry * cos)], -1)
        x0, y0 = np.maximum((c - ext).min(0).astype(int), 0)
        x1, y1 = np.minimum((c + ext).max(0).astype(int) + 2, self.img.shape[1::-1])
        if x0 >= x1 or y0 >= y1:
            return
        dx = np.arange(x0, x1, dtype=np.float32) - c[:, :1, None]  # (E, 1, W)
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - c[:, 1:, None]  # (E, H, 1)
        cos, sin, rx, ry = (v[:, None, None] for v in (cos, sin, rx, ry))
        d = np.hypot((dx * cos + dy * sin) / rx, (dy * cos - dx * sin) / ry)
        # A one-pixel soft edge keeps sub-pixel size changes visible after compression.
        alpha = np.clip((1.0 - d) * np.minimum(rx, ry) + 0.5, 0.0, 1.0).max(0)[..., None]
        patch = self.img[y0:y1, x0:x1]
        patch += alpha * (color - patch)
        b = self.box
        b[:] = min(b[0], x0), min(b[1], y0), max(b[2], x1 - 1), max(b[3], y1 - 1)

    def arm(self, points: np.ndarray, width: float, color: np.ndarray) -> None:
        """Draw a jointed limb through points (P, 2) as one ellipse per segment."""
        a, b = points[:-1], points[1:]
        v = b - a
        half, widths = np.maximum(np.hypot(*v.T) / 2 + width / 2, width), np.full(len(v), width)
        self.ellipses((a + b) / 2, widths, half, np.arctan2(-v[:, 0], v[:, 1]), color)

    def hand(self, c: np.ndarray, s: float, openness: float, tilt: float, thumb: float,
             color: np.ndarray) -> None:  # fmt: skip
        """Palm plus four fingers and a thumb (on side thumb=+-1) that lengthen as it opens."""
        i = np.arange(4) - 1.5
        phi = np.append(tilt + (0.06 + 0.28 * openness) * i, tilt + thumb * (0.9 + 0.5 * openness))
        length = np.append(np.full(4, 0.3 + 0.8 * openness), 0.25 + 0.45 * openness) * s
        base = np.append(i * 0.22, thumb * 0.35)[:, None] * _up(tilt + np.pi / 2)
        base[:4] += _up(tilt) * 0.45
        tips = c + base * s + _up(phi) * length[:, None] / 2
        width = np.append(np.full(4, 0.13), 0.14) * s
        rx, ry = np.append(width, 0.5 * s), np.append(np.maximum(length / 2, width), 0.6 * s)
        self.ellipses(np.vstack([tips, c]), rx, ry, np.append(phi, tilt), color)


def _render(gloss: str, size: tuple[int, int], seed: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, list[int], int]:  # fmt: skip
    """Render one video of gloss; returns (frames (T, H, W, 3) uint8, bbox, signer_id)."""
    w, h = size
    signer_id = int(rng.integers(_NUM_SIGNERS))
    srng = np.random.default_rng([seed, 1, signer_id])  # traits shared by a signer's videos
    skin = _SKIN[0] + srng.uniform() * (_SKIN[1] - _SKIN[0]) + rng.normal(0, 8, 3)
    clothes = _CLOTHES[srng.integers(len(_CLOTHES))] + rng.normal(0, 6, 3)
    hair = srng.uniform(10, 90) * np.array([1.0, 0.8, 0.6])
    r = srng.uniform(0.095, 0.12) * h * rng.uniform(0.95, 1.05)  # head radius, the unit length
    head = np.array([w / 2 + (srng.uniform(-0.08, 0.08) + rng.normal(0, 0.03)) * w,
                     h * rng.uniform(0.24, 0.30)])  # fmt: skip

    # Mostly grey gradient backgrounds, muted for the same reason as the clothing.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = xx * np.cos(angle := rng.uniform(0, 2 * np.pi)) + yy * np.sin(angle)
    g = ((g - g.min()) / (g.max() - g.min()))[..., None]
    c0, c1 = rng.uniform(140, 220, (2, 1)) + rng.normal(0, 12, (2, 3))
    box = [w, h, 0, 0]
    body = _Canvas(c0 + g * (c1 - c0), box)
    body.ellipses(head + (0, 6.1 * r), 2.8 * r, 4.5 * r, 0.0, clothes)
    body.ellipses(head + (0, 1.3 * r), 0.4 * r, 0.8 * r, 0.0, skin * 0.9)
    body.ellipses(head - (0, 0.2 * r), 1.05 * r, 1.0 * r, 0.0, hair)
    body.ellipses(head, 0.9 * r, 1.05 * r, 0.0, skin)

    n = int(rng.integers(20, 41))
    t = np.linspace(0.0, 1.0, n)
    # Holds at both ends come from mirrored ranges, so a reversed pair shows alike frame sets.
    s0, s1 = rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0)
    p = np.clip((t - s0) / (s1 - s0), 0.0, 1.0)
    p = p * p * (3 - 2 * p)
    if gloss in _REVERSED:
        p = 1.0 - p
    osc = np.sin(2 * np.pi * (rng.uniform(1.5, 3.0) * t + rng.uniform()))
    motion = _MOTIONS[_REVERSED.get(gloss, gloss)]
    shift, k, jtilt = rng.normal(0, 0.25, 2), rng.uniform(0.85, 1.15), rng.normal(0, 0.15)
    # One noise field per video, cropped at a random offset per frame: far cheaper than fresh
    # noise for every frame, and no easier for a model to learn.
    noise = rng.standard_normal((h + 16, w + 16, 3), np.float32) * rng.uniform(2.0, 7.0)
    offsets = rng.integers(0, 17, (n, 2))

    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        cv = _Canvas(body.img.copy(), box)
        for dx, dy, scale, openness, tilt in motion(p[i], osc[i]):
            c, s = head + (np.array([dx, dy]) + shift) * r, scale * k * _HAND_SCALE * r
            tilt += jtilt
            side = 1.0 if c[0] > head[0] else -1.0
            # A sleeved arm makes the moving part big enough for pooled CNN features to notice.
            shoulder, elbow = head + (side * 2.2 * r, 2.3 * r), head + (side * 2.7 * r, 5.0 * r)
            cv.arm(np.stack([shoulder, elbow, c - _up(tilt) * 0.5 * s]), 0.42 * r, clothes * 0.75)
            cv.hand(c, s, openness, tilt, -side, skin)
        oy, ox = offsets[i]
        frames[i] = np.clip(cv.img + noise[oy : oy + h, ox : ox + w], 0, 255)
    return frames, [int(v) for v in box], signer_id


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    """Encode RGB frames as H.264 (yuv420p) at _FPS with PyAV."""
    with av.open(str(path), "w") as container:
        # no-asm: at this size x264's AVX-512 code reads uninitialized memory (its output follows
        # MALLOC_PERTURB_; not at 256 px wide, nor with its AVX2 code), so two fresh datasets
        # differed in about a third of their videos (issue 12). Its C code is deterministic and,
        # for frames this small, about as fast.
        options = {"crf": "23", "preset": "veryfast", "x264-params": "no-asm=1"}
        stream = container.add_stream("libx264", rate=_FPS, options=options)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # frames are tiny; threads cost more than they save
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _check_replaceable(root: Path) -> None:
    """Raise FileExistsError if root holds an index or videos that we did not write."""
    if not (root / _MARKER).exists() and any((root / n).exists() for n in (INDEX_NAME, "videos")):
        raise FileExistsError(
            f"{root} holds a dataset not written by slr.acquisition.demo; not replacing"
        )


def _install(tmp: Path, root: Path) -> None:
    """Move a finished dataset from tmp into root without touching files we did not write."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        os.replace(tmp, root)
        return
    _check_replaceable(root)
    # Drop the index first so a half-replaced dataset never looks complete.
    (root / INDEX_NAME).unlink(missing_ok=True)
    shutil.rmtree(root / "videos", ignore_errors=True)
    for name in ("videos", _MARKER, INDEX_NAME):
        os.replace(tmp / name, root / name)


def make_demo_dataset(root: str | Path, num_classes: int = 8, train_per_class: int = 12,
                      val_per_class: int = 4, test_per_class: int = 4,
                      size: tuple[int, int] = (160, 120), seed: int = 0) -> Path:  # fmt: skip
    """Write a synthetic dataset in the WLASL layout (index JSON + videos/<video_id>.mp4).

    Args:
        root: Dataset directory, created if missing. Index and videos already there are
            replaced only if this function wrote them; otherwise FileExistsError is raised.
        num_classes: Number of glosses: the first ``num_classes`` of ``DEMO_GLOSSES``.
        train_per_class: Training videos per gloss.
        val_per_class: Validation videos per gloss.
        test_per_class: Test videos per gloss.
        size: Video (width, height) in pixels; both must be even for yuv420p.
        seed: Seed for every random choice, so equal arguments give equal datasets.

    Returns:
        ``root`` as a Path.
    """
    root, (w, h) = Path(root), size
    if not 1 <= num_classes <= len(DEMO_GLOSSES):
        raise ValueError(f"num_classes must be in 1..{len(DEMO_GLOSSES)}, got {num_classes}")
    if w % 2 or h % 2:
        raise ValueError(f"libx264 yuv420p needs even width and height, got {size}")
    _check_replaceable(root)  # fail before the work, not only after it
    start = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    # A sibling on the same filesystem, so moving it into place is an atomic rename.
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        tmp.chmod(0o755)
        (tmp / "videos").mkdir()
        splits = ["train"] * train_per_class + ["val"] * val_per_class + ["test"] * test_per_class
        videos = [
            (label, i, split) for label in range(num_classes) for i, split in enumerate(splits)
        ]
        index = [{"gloss": gloss, "instances": []} for gloss in DEMO_GLOSSES[:num_classes]]
        pending: deque[Future] = deque()
        # Encoding (mostly outside the GIL) in one background thread overlaps the next render.
        with ThreadPoolExecutor(max_workers=1) as writer:
            for n, (label, instance_id, split) in enumerate(videos):
                rng = np.random.default_rng([seed, 0, label, instance_id])
                frames, bbox, signer_id = _render(DEMO_GLOSSES[label], size, seed, rng)
                video_id = f"{n:05d}"
                pending.append(
                    writer.submit(_write_mp4, tmp / "videos" / f"{video_id}.mp4", frames)
                )
                if len(pending) > 2:  # bounds the frames held in memory; re-raises errors
                    pending.popleft().result()
                inst = {"bbox": bbox, "instance_id": instance_id, "signer_id": signer_id,
                        "split": split, "variation_id": 0, "video_id": video_id}  # fmt: skip
                index[label]["instances"].append(dict(sorted({**inst, **_FIXED_KEYS}.items())))
            for job in pending:
                job.result()
        (tmp / _MARKER).write_text(f"written by slr.acquisition.demo with seed={seed}\n")
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=1))
        _install(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %d demo videos of %d glosses to %s in %.1fs",
             len(videos), num_classes, root, time.perf_counter() - start)  # fmt: skip
    return root


def ensure_demo_dataset(root: str | Path, **kwargs) -> Path:
    """Create the demo dataset unless ``root/WLASL_v0.3.json`` already exists.

    Concurrent callers serialise on a lock file beside root, so one writes and the rest reuse.
    An existing dataset is kept even if ``kwargs`` differ from those that made it.

    Args:
        root: Dataset directory.
        **kwargs: Passed on to :func:`make_demo_dataset`.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    if (root / INDEX_NAME).exists():  # the index is written last, so this means complete
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (root / INDEX_NAME).exists():
            log.debug("demo dataset already at %s", root)
        else:
            make_demo_dataset(root, **kwargs)
    return root


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write the synthetic WLASL-layout demo dataset.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--num-classes", type=int, default=len(DEMO_GLOSSES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = make_demo_dataset(args.root, num_classes=args.num_classes, seed=args.seed)
    entries = json.loads((out / INDEX_NAME).read_text())
    counts = Counter(inst["split"] for e in entries for inst in e["instances"])
    print(f"{out}: {len(entries)} glosses, videos per split: {dict(counts)}")


class DemoDataModule(WLASLDataModule):
    """WLASL's datamodule over the synthetic demo dataset, written into `root` on first use
    (`data=demo`). Checkpoints record it as WLASL data: the files are in that layout."""

    def __init__(self, root: str, make_demo: bool = True, **kwargs: Any) -> None:
        super().__init__(root, make_demo=make_demo, **kwargs)

    def prepare_data(self) -> None:
        if self.hparams.make_demo:
            ensure_demo_dataset(self.root)
        super().prepare_data()

    @property
    def dataset_spec(self) -> dict:
        return {**super().dataset_spec, "_target_": WLASL_TARGET}
