"""Feature stores that must not stay wrong: a clip that failed for a passing reason is retried
when its store is next opened, a damaged store is rebuilt, each failed clip is named once."""

from __future__ import annotations

import fcntl
import logging
import shutil
import threading
import time

import numpy as np
import pytest

from slr.data.dataset import ClipDataset
from slr.data.features import FeatureDataset, build_store, module_digest, store_key
from slr.data.transforms import ClipTransform
from slr.data.video import DecodeError
from slr.data.wlasl import read_subset
from slr.models.encoder import FrameEncoder


@pytest.fixture
def clips(tiny_root, tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(tiny_root / "videos", videos)
    index = read_subset(tiny_root / "WLASL_v0.3.json", None)
    return ClipDataset(index.splits["val"], videos, 4, ClipTransform(image_size=32))


@pytest.fixture(scope="module")
def encoder():
    return FrameEncoder(weights=None, chunk_frames=4)


def build(clips, encoder, cache, views=1):
    return build_store(clips, encoder, module_digest(encoder), cache, views=views, num_workers=0)


def fail_for(monkeypatch, ids):
    """Decoding raises for these ids, as a file briefly unreadable would (same size, mtime)."""
    real = ClipDataset.load

    def load(self, inst, generator=None):
        if inst.video_id in ids:
            raise DecodeError(f"{inst.video_id}: Input/output error")
        return real(self, inst, generator)

    monkeypatch.setattr(ClipDataset, "load", load)


@pytest.mark.slow
@pytest.mark.parametrize("views", [1, 2])
def test_a_passing_failure_is_retried_when_the_store_is_opened(clips, encoder, tmp_path,
                                                               monkeypatch, views):  # fmt: skip
    flaky = clips.instances[1].video_id
    fail_for(monkeypatch, {flaky})
    first = build(clips, encoder, tmp_path / "cache", views)
    assert list(first.failed) == [flaky]
    monkeypatch.undo()
    again = build(clips, encoder, tmp_path / "cache", views)
    assert again.path == first.path and again.failed == {}
    whole = build(clips, encoder, tmp_path / "fresh", views)
    np.testing.assert_array_equal(again.features[:], whole.features[:])
    np.testing.assert_array_equal(again.lengths, whole.lengths)


def test_an_all_failed_store_is_rebuilt_once_its_clips_decode(clips, encoder, tmp_path,
                                                              monkeypatch):  # fmt: skip
    fail_for(monkeypatch, {i.video_id for i in clips.instances})
    first = build(clips, encoder, tmp_path / "cache")
    assert len(first.failed) == len(clips) and first.features.shape[-1] == 0
    monkeypatch.undo()
    again = build(clips, encoder, tmp_path / "cache")
    assert again.failed == {} and again.features.shape[-1] == 1280


def test_a_file_that_stays_broken_stays_failed(clips, encoder, tmp_path):
    clips.path(clips.instances[0]).write_bytes(b"<html>gone</html>")
    first = build(clips, encoder, tmp_path / "cache")
    again = build(clips, encoder, tmp_path / "cache")
    assert list(again.failed) == list(first.failed) == [clips.instances[0].video_id]


@pytest.mark.parametrize("damage", ["cut features", "bad meta", "no lengths"])
def test_a_damaged_store_is_rebuilt(clips, encoder, tmp_path, caplog, damage):
    first = build(clips, encoder, tmp_path / "cache")
    expected = np.array(first.features)
    path = first.path
    del first
    if damage == "cut features":
        data = (path / "features.npy").read_bytes()
        (path / "features.npy").write_bytes(data[: len(data) // 2])
    elif damage == "bad meta":
        (path / "meta.json").write_text('{"video_ids": [')
    else:
        (path / "lengths.npy").unlink()
    with caplog.at_level(logging.WARNING):
        again = build(clips, encoder, tmp_path / "cache")
    assert caplog.text.count(f"feature store {path} is damaged") == 1
    np.testing.assert_array_equal(again.features, expected)


def test_each_failed_clip_is_warned_once(clips, encoder, tmp_path, caplog):
    bad = clips.instances[0].video_id
    clips.path(clips.instances[0]).write_bytes(b"junk")
    with caplog.at_level(logging.WARNING):
        store = build(clips, encoder, tmp_path / "cache", views=4)
        FeatureDataset(store, clips, train=True)
    assert sum(bad in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING) == 1


def test_a_waiting_run_says_what_it_waits_for(clips, encoder, tmp_path, caplog):
    cache = tmp_path / "cache"
    cache.mkdir()
    done = []
    # another process building this store holds its lock
    held = open(cache / f"{store_key(clips, 1, module_digest(encoder))}.lock", "w")  # noqa: SIM115
    fcntl.flock(held, fcntl.LOCK_EX)
    with caplog.at_level(logging.INFO):
        worker = threading.Thread(target=lambda: done.append(build(clips, encoder, cache)))
        worker.start()
        deadline = time.monotonic() + 60
        while "waiting for another process" not in caplog.text:
            assert time.monotonic() < deadline, "no message while waiting"
            time.sleep(0.05)
        assert not done
        fcntl.flock(held, fcntl.LOCK_UN)
        held.close()
        worker.join(60)
    assert done and "lock free after" in caplog.text


def test_an_unwritable_cache_dir_names_the_setting(clips, encoder, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=f"data.cache_dir={blocker / 'cache'}: cannot write"):
        build(clips, encoder, blocker / "cache")
