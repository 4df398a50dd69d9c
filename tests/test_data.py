"""The data layer on the real WLASL index and clips, and on files written for the purpose."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from slr.data.datamodule import WLASLDataModule
from slr.data.dataset import ClipDataset, collate_clips
from slr.data.sampling import jittered_indices, uniform_indices
from slr.data.transforms import ClipTransform, square_box
from slr.data.video import crop_resize, read_frames
from slr.data.wlasl import Instance, WLASLFormatError, read_subset

# ../shared/wlasl/README.md: videos per split of each subset, from the index
SUBSET_COUNTS = {
    100: (1442, 338, 258),
    300: (3549, 900, 668),
    1000: (8974, 2318, 1876),
    2000: (14289, 3916, 2878),
}
UNKNOWN_SPLIT_IDS = {100: 0, 300: 1, 1000: 6, 2000: 12}


def write_video(
    path: Path, levels: list[int], fps: int = 25, size=(64, 48), codec="libx264", options=None
) -> None:
    """A clip whose frame i is a flat grey of `levels[i]`, so decoded frames can be named."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.options = options or {"qp": "0"}
        for level in levels:
            image = np.full((size[1], size[0], 3), level, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())


@pytest.mark.parametrize("subset", sorted(SUBSET_COUNTS))
def test_subset_sizes_and_split_counts(shared_wlasl, subset):
    index = read_subset(shared_wlasl / "WLASL_v0.3.json", subset)
    assert len(index.glosses) == subset
    counts = tuple(len(index.splits[s]) for s in ("train", "val", "test"))
    assert counts == SUBSET_COUNTS[subset]


def test_labels_follow_file_order(shared_wlasl):
    index = read_subset(shared_wlasl / "WLASL_v0.3.json", 2000)
    class_list = [
        line.split("\t")[1]
        for line in (shared_wlasl / "wlasl_class_list.txt").read_text().splitlines()
    ]
    differing = [
        i for i, (a, b) in enumerate(zip(index.glosses, class_list, strict=True)) if a != b
    ]
    assert differing == [163]  # the upstream class list's 'losear' typo for 'lose'
    raw = json.loads((shared_wlasl / "WLASL_v0.3.json").read_text())
    by_id = {i["video_id"]: label for label, e in enumerate(raw) for i in e["instances"]}
    for split in index.splits.values():
        for inst in split:
            assert inst.label == by_id[inst.video_id]
            assert inst.gloss == index.glosses[inst.label]


@pytest.mark.parametrize("subset", sorted(SUBSET_COUNTS))
def test_split_file_ids_missing_from_index_are_counted(shared_wlasl, subset):
    split_file = shared_wlasl / f"nslt_{subset}.json"
    index = read_subset(shared_wlasl / "WLASL_v0.3.json", subset, split_file)
    assert len(index.unknown_ids) == UNKNOWN_SPLIT_IDS[subset]
    listed = len(json.loads(split_file.read_text()))
    assert sum(len(v) for v in index.splits.values()) == listed - UNKNOWN_SPLIT_IDS[subset]


def test_split_file_label_mismatch_is_an_error(shared_wlasl, tmp_path):
    bad = tmp_path / "nslt_100.json"
    bad.write_text(json.dumps({"69241": {"subset": "train", "action": [5, 1, 10]}}))
    with pytest.raises(WLASLFormatError, match="69241 has label 5"):
        read_subset(shared_wlasl / "WLASL_v0.3.json", 100, bad)


def manifest(shared_wlasl: Path) -> list[dict]:
    return json.loads((shared_wlasl / "clips" / "manifest.json").read_text())


@pytest.mark.parametrize("train", [False, True])
def test_every_real_clip_loads(shared_wlasl, train):
    entries = manifest(shared_wlasl)
    index = read_subset(shared_wlasl / "WLASL_v0.3.json", 100)
    by_id = {i.video_id: i for split in index.splits.values() for i in split}
    instances = [by_id[e["video_id"]] for e in entries]
    assert {e["codec"] for e in entries} >= {"h264", "mpeg4"}
    assert any(e["stream_frames"] != e["decoded_frames"] for e in entries)
    for num_frames in (16, 48):
        transform = ClipTransform(image_size=48, train=train)
        dataset = ClipDataset(instances, shared_wlasl / "clips", num_frames, transform)
        for entry, sample in zip(entries, dataset, strict=True):
            assert "frames" in sample, sample
            assert sample["frames"].shape == (num_frames, 3, 48, 48)
            assert sample["frames"].dtype == torch.uint8
            assert sample["length"] == min(num_frames, entry["decoded_frames"])
            assert (sample["frames"][sample["length"] :] == 0).all()
            assert sample["label"] == entry["gloss_index"]


def test_corrupt_video_is_skipped_by_name(tmp_path, caplog):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "00001.mp4", [100] * 10)
    (videos / "00002.mp4").write_bytes(b"<html>404 not found</html>")
    good = (videos / "00001.mp4").read_bytes()
    (videos / "00003.mp4").write_bytes(good[: len(good) // 3])  # truncated
    instances = [Instance(f"0000{i}", 0, "a", "test") for i in (1, 2, 3)]
    dataset = ClipDataset(instances, videos, 4, ClipTransform(image_size=32))
    with caplog.at_level(logging.WARNING):
        batch = collate_clips([dataset[i] for i in range(3)])
    assert "00001" in batch["video_id"]
    assert "00002" in batch["skipped"]
    assert batch["frames"].shape[0] == len(batch["video_id"])
    assert sorted(batch["video_id"] + batch["skipped"]) == ["00001", "00002", "00003"]
    assert "00002" in caplog.text
    empty = collate_clips([dataset[1]])
    assert empty["video_id"] == [] and empty["skipped"] == ["00002"]


def test_untrimmed_video_is_cut_to_its_frame_range(tmp_path):
    """frame_start/frame_end count 1-based frames at 25 fps; a 30 fps file is cut at the same
    times: index frames 26..50 = 1.0 s .. 2.0 s = file frames 30..59."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "00001.mp4", [2 * i for i in range(90)], fps=30)
    inst = Instance("00001", 0, "a", "train", frame_start=26, frame_end=50)
    transform = ClipTransform(image_size=16)
    cut = ClipDataset([inst], videos, 64, transform, trimmed=False)[0]
    assert cut["length"] == 30
    levels = cut["frames"][: cut["length"], 0, 8, 8].float() / 2
    assert levels[0].item() == pytest.approx(30, abs=1)
    assert levels[-1].item() == pytest.approx(59, abs=1)
    whole = ClipDataset([inst], videos, 64, transform, trimmed=True)[0]
    assert whole["length"] == 64  # 90 frames, sampled down


def test_sampling():
    assert uniform_indices(5, 8) == [0, 1, 2, 3, 4]
    assert uniform_indices(100, 5) == [0, 25, 50, 74, 99]
    for _ in range(20):
        picks = jittered_indices(50, 8)
        assert len(picks) == 8 and picks == sorted(picks) and picks[0] >= 0 and picks[-1] < 50
    assert jittered_indices(3, 8) == [0, 1, 2]


@pytest.mark.parametrize(
    ("bbox", "size"),
    [((82, 11, 212, 192), (288, 192)), ((385, 37, 885, 720), (1280, 720)), (None, (320, 240))],
)
def test_square_box_inside_frame(bbox, size):
    x1, y1, x2, y2 = square_box(bbox, *size, margin=0.15)
    assert x2 - x1 == y2 - y1 > 0
    assert x1 >= 0 and y1 >= 0 and x2 <= size[0] and y2 <= size[1]


def test_datamodule_counts_missing_videos(tiny_root, tmp_path):
    root = tmp_path / "root"
    (root / "videos").mkdir(parents=True)
    (root / "WLASL_v0.3.json").symlink_to(tiny_root / "WLASL_v0.3.json")
    videos = sorted((tiny_root / "videos").iterdir())
    for video in videos[::2]:
        (root / "videos" / video.name).symlink_to(video)
    dm = WLASLDataModule(str(root), subset=None, num_frames=4, image_size=32, num_workers=0)
    report = dm.availability()
    counts = report["splits"]
    assert sum(c["nominal"] for c in counts.values()) == len(videos)
    assert sum(c["available"] for c in counts.values()) == len(videos[::2])
    for split, c in counts.items():
        assert c["missing"] == c["nominal"] - c["available"] == len(report["missing_ids"][split])
    dm.setup("fit")
    assert len(dm.dataset("train")) == counts["train"]["available"]
    assert dm.num_classes == 3


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda e: e[1]["instances"][0].pop("video_id"), "gloss 1"),
        (lambda e: e[0]["instances"][0].update(split="dev"), "split 'dev'"),
        (lambda e: e[2]["instances"][1].update(bbox=[1, 2, 3]), "bbox"),
        (lambda e: e[0].pop("instances"), "entry 0"),
    ],
)
def test_malformed_index_entry(tiny_root, tmp_path, mutate, match):
    entries = json.loads((tiny_root / "WLASL_v0.3.json").read_text())
    mutate(entries)
    path = tmp_path / "WLASL_v0.3.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(WLASLFormatError, match=match) as err:
        read_subset(path, None)
    assert str(path) in str(err.value)


def test_bad_root_index_and_subset(tiny_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="data.root"):
        WLASLDataModule(str(tmp_path / "nowhere")).prepare_data()
    with pytest.raises(FileNotFoundError, match="WLASL_v0.3.json"):
        _ = WLASLDataModule(str(tmp_path)).num_classes
    (tmp_path / "WLASL_v0.3.json").write_text("{not json")
    with pytest.raises(WLASLFormatError, match="not valid JSON"):
        _ = WLASLDataModule(str(tmp_path)).num_classes
    with pytest.raises(ValueError, match="data.subset=500"):
        read_subset(tiny_root / "WLASL_v0.3.json", 500)
    with pytest.raises(ValueError, match="has only 3 glosses"):
        read_subset(tiny_root / "WLASL_v0.3.json", 100)


def test_crop_resize_cuts_the_box_on_both_paths():
    """4:2:0 frames are cropped in YUV before scaling; other formats are scaled whole and sliced.
    Both must cut the same square: a frame of four flat quadrants, split at (160, 120)."""
    colours = np.array([[[200, 30, 30], [30, 200, 30]], [[30, 30, 200], [220, 220, 40]]], np.uint8)
    image = colours.repeat(120, axis=0).repeat(160, axis=1)  # (240, 320, 3)
    rgb = av.VideoFrame.from_ndarray(image, format="rgb24")
    for frame in (rgb, rgb.reformat(format="yuv420p")):
        for x1, y1, x2, y2 in [(120, 60, 280, 220), (121, 61, 279, 219), (0, 0, 240, 240)]:
            (out,) = crop_resize([frame], (x1, y1, x2, y2), 64)
            split_x, split_y = (160 - x1) * 64 // (x2 - x1), (120 - y1) * 64 // (y2 - y1)
            for qy, qx in np.ndindex(2, 2):
                row = split_y - 5 if qy == 0 else split_y + 5
                col = split_x - 5 if qx == 0 else split_x + 5
                got = out[row, col].astype(int)
                assert np.abs(got - colours[qy, qx]).max() <= 6, (frame.format.name, x1, qy, qx)


@pytest.mark.parametrize(
    ("codec", "options"),
    [
        ("libx264", None),
        # open GOPs: B-frames shown before a keyframe they follow in decode order
        ("libx264", {"bf": "3", "x264-params": "open-gop=1:keyint=12:min-keyint=12:scenecut=0"}),
        ("mpeg4", {"bf": "2", "g": "12"}),
    ],
)
def test_seeking_reads_the_same_frames_as_decoding_from_the_start(tmp_path, codec, options):
    path = tmp_path / "long.mp4"
    write_video(path, [i % 250 for i in range(300)], fps=30, codec=codec, options=options)
    everything, fps = read_frames(path)
    assert fps == 30 and len(everything) == 300
    for start_sec, stop_sec in [(1.0, 2.0), (3.3, 4.3), (0.4, 0.5), (9.5, None)]:
        seeked, _ = read_frames(path, start_sec, stop_sec)
        start = round(start_sec * 30)
        stop = 300 if stop_sec is None else round(stop_sec * 30)
        assert [f.pts for f in seeked] == [f.pts for f in everything[start:stop]]
        for a, b in zip(seeked, everything[start:stop], strict=True):
            assert np.array_equal(a.to_ndarray(), b.to_ndarray())


_HASH_DEMO = """
import hashlib, sys
from slr.acquisition.demo import make_demo_dataset
root = make_demo_dataset(sys.argv[1], num_classes=2, train_per_class=2, val_per_class=1,
                         test_per_class=1)  # the demo's own 160 x 120 frames
for path in sorted((root / "videos").iterdir()):
    print(path.name, hashlib.sha256(path.read_bytes()).hexdigest())
"""


@pytest.mark.slow
def test_demo_videos_do_not_depend_on_heap_contents(tmp_path):
    """Two fresh demo datasets are byte-identical, whatever memory the encoder happens to get
    (issue 12: x264's AVX-512 code read uninitialized memory, so videos differed between
    fresh datasets). glibc's MALLOC_PERTURB_ fills malloc'd memory with a given byte."""
    hashes = []
    for n, perturb in enumerate(["1", "170"]):
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        out = subprocess.run(
            [sys.executable, "-c", _HASH_DEMO, str(tmp_path / f"demo{n}")],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        hashes.append(out.stdout.splitlines())
    assert len(hashes[0]) == 8
    assert hashes[0] == hashes[1]
