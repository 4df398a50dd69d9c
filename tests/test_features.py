"""The feature cache: same logits as the live path, keyed by everything that changes features,
built once, safe under concurrent builders, augmented views for training."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading

import pytest
import torch

import slr.data.features as features_module
from slr.data.dataset import ClipDataset, collate_clips
from slr.data.features import FeatureDataset, build_store, module_digest
from slr.data.transforms import ClipTransform
from slr.data.wlasl import read_subset
from slr.extract import extract
from slr.models.encoder import FrameEncoder
from slr.models.mobilenet_lstm import SignClassifier
from slr.train import train


@pytest.fixture
def clips(tiny_root, tmp_path):
    """The tiny dataset's test split, on a private copy of its videos (tests touch files)."""
    videos = tmp_path / "videos"
    shutil.copytree(tiny_root / "videos", videos)
    index = read_subset(tiny_root / "WLASL_v0.3.json", None)
    return ClipDataset(index.splits["test"], videos, 6, ClipTransform(image_size=32))


@pytest.fixture(scope="module")
def encoder():
    return FrameEncoder(weights=None, chunk_frames=4)


@pytest.mark.slow
def test_cached_logits_equal_live_logits(clips, encoder, tmp_path):
    store = build_store(clips, encoder, module_digest(encoder), tmp_path / "cache")
    cached = FeatureDataset(store, clips, train=False)
    torch.manual_seed(0)
    net = SignClassifier(3, encoder, lstm_hidden=16).eval()
    assert len(cached) == len(clips)
    for i in range(len(clips)):
        live, hit = clips[i], cached[i]
        assert hit["video_id"] == live["video_id"] and hit["length"] == live["length"]
        live_logits = net(live["frames"][None], live["length"][None])
        cached_logits = net.classify(hit["features"][None], hit["length"][None])
        torch.testing.assert_close(cached_logits, live_logits, rtol=1e-2, atol=5e-3)


@pytest.mark.slow
def test_store_is_reused_and_keyed_by_what_changes_features(clips, encoder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    digest = module_digest(encoder)
    first = build_store(clips, encoder, digest, cache)
    monkeypatch.setattr(features_module, "_build", lambda *a, **k: pytest.fail("rebuilt"))
    assert build_store(clips, encoder, digest, cache).path == first.path
    monkeypatch.undo()

    paths = {first.path}
    clips.transform.image_size = 48  # preprocessing
    paths.add(build_store(clips, encoder, digest, cache).path)
    clips.transform.image_size = 32
    clips.num_frames = 5  # sampling
    paths.add(build_store(clips, encoder, digest, cache).path)
    clips.num_frames = 6
    video = clips.path(clips.instances[0])
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    assert build_store(clips, encoder, digest, cache).path in paths  # a copy: same content
    with open(video, "ab") as f:
        f.write(b"\0" * 16)  # the file's content (trailing bytes the demuxer ignores)
    paths.add(build_store(clips, encoder, digest, cache).path)
    other = FrameEncoder(weights=None, init_seed=1)  # the weights
    paths.add(build_store(clips, other, module_digest(other), cache).path)
    encoder.bf16 = True  # the numerics
    paths.add(build_store(clips, encoder, module_digest(encoder), cache).path)
    encoder.bf16 = False
    assert len(paths) == 6
    assert not list(cache.glob("*.tmp*")), "temporary build folders left behind"


def test_concurrent_builders_make_one_store(clips, encoder, tmp_path, monkeypatch):
    builds = []
    real_build = features_module._build

    def counting_build(*args, **kwargs):
        builds.append(1)
        real_build(*args, **kwargs)

    monkeypatch.setattr(features_module, "_build", counting_build)
    digest, results = module_digest(encoder), []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                build_store(clips, encoder, digest, tmp_path, num_workers=0)
            )
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len({r.path for r in results}) == 1 and len(results) == 3


def test_training_views_differ_and_are_drawn_at_random(clips, encoder, tmp_path):
    clips.transform = ClipTransform(image_size=32, train=True)
    store = build_store(clips, encoder, module_digest(encoder), tmp_path, views=3)
    assert store.features.shape[:2] == (3 * len(clips), 6)
    views = torch.from_numpy(store.features[:3].astype("float32"))
    assert not torch.allclose(views[0], views[1])
    dataset = FeatureDataset(store, clips, train=True)
    seen = {tuple(dataset[0]["features"][0, :4].tolist()) for _ in range(30)}
    assert len(seen) > 1


def test_undecodable_video_is_left_out_by_name(clips, encoder, tmp_path, caplog):
    bad = clips.instances[1].video_id
    clips.path(clips.instances[1]).write_bytes(b"<html>gone</html>")
    with caplog.at_level(logging.WARNING):
        store = build_store(clips, encoder, module_digest(encoder), tmp_path, num_workers=0)
        dataset = FeatureDataset(store, clips, train=False)
    assert list(store.failed) == [bad]
    assert "error" in dataset[1] and dataset[1]["video_id"] == bad  # skipped and counted
    assert all("features" in dataset[i] for i in range(len(dataset)) if i != 1)
    batch = collate_clips([dataset[i] for i in range(len(dataset))])
    assert batch["skipped"] == [bad] and len(batch["video_id"]) == len(clips) - 1
    assert bad in caplog.text


def test_store_of_clips_that_all_fail(clips, encoder, tmp_path):
    for inst in clips.instances:
        clips.path(inst).write_bytes(b"junk")
    store = build_store(clips, encoder, module_digest(encoder), tmp_path, num_workers=0)
    dataset = FeatureDataset(store, clips, train=False)
    assert all("error" in dataset[i] for i in range(len(dataset)))
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_crashed_build_leaves_nothing_behind(clips, tmp_path):
    def broken(frames, lengths):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        build_store(clips, broken, "digest", tmp_path / "cache", num_workers=0)
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]


@pytest.mark.slow
def test_train_with_cached_features(train_cfg, tmp_path):
    """A second run reads the stores the first built, and gets the same numbers: building a
    store must not change the run's random stream."""
    train_cfg.data.features = "cached"
    train_cfg.data.cache_dir = str(tmp_path / "cache")
    train_cfg.data.cache_views = 2
    metrics = train(train_cfg.copy())
    assert metrics["test/videos"] == 6
    train_cfg.paths.output_dir = str(tmp_path / "second")
    again = train(train_cfg)
    keys = ("val/top1", "test/top1", "test/top5", "test/top1_class")
    assert {k: again[k] for k in keys} == {k: metrics[k] for k in keys}
    stores = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(stores) == 3  # train (2 views), val, test
    meta = [json.loads((p / "meta.json").read_text()) for p in stores]
    assert sorted(m["views"] for m in meta) == [1, 1, 2]


@pytest.mark.slow
def test_extract_fills_the_stores_train_reads(train_cfg, tmp_path, monkeypatch):
    train_cfg.data.cache_dir = str(tmp_path / "cache")
    train_cfg.data.cache_views = 2
    summary = extract(train_cfg)
    assert {s: (v["cached"], v["failed"], v["views"]) for s, v in summary.items()} == {
        "train": (12, 0, 2),
        "val": (6, 0, 1),
        "test": (6, 0, 1),
    }
    monkeypatch.setattr(features_module, "_build", lambda *a, **k: pytest.fail("rebuilt"))
    train_cfg.data.features = "cached"
    assert train(train_cfg)["test/videos"] == 6
