"""slr.prepare: frame-range semantics on clips written for the purpose (25 and 30 fps, known frame
counts), and raw/ -> videos/ on real WLASL clips and broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from slr.acquisition import trim
from slr.acquisition.prepare import prepare
from slr.acquisition.trim import Cut, cut_video, pick_encoder, probe, source_range
from slr.data.datamodule import WLASLDataModule
from slr.data.video import read_frames
from slr.data.wlasl import INDEX_FILE, Instance
from tests.helpers import compose_cfg
from tests.test_data import write_video
from tests.wlasl_server import HTML_PAGE, write_index

STEP = 5  # frame i of a written clip is a flat grey of STEP * i


def levels_of(path: Path) -> list[int]:
    """Which written frame each decoded frame is."""
    with av.open(str(path)) as container:
        return [
            round(float(f.to_ndarray(format="gray").mean()) / STEP)
            for f in container.decode(video=0)
        ]


def inst(start: int, end: int, video_id: str = "x") -> Instance:
    return Instance(video_id, 0, "g", "train", frame_start=start, frame_end=end)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[int, Path]:
    """A 40-frame clip at 25 fps and a 45-frame clip at 30 fps."""
    folder = tmp_path_factory.mktemp("clips")
    made = {}
    for fps, n in ((25, 40), (30, 45)):
        made[fps] = folder / f"c{fps}.mp4"
        write_video(made[fps], [STEP * i for i in range(n)], fps=fps, size=(32, 24))
    return made


def test_source_range_maps_25fps_frames_through_time():
    assert source_range(inst(3, 7), 25.0) == (2, 7)  # 1-based inclusive 3..7 = 0-based 2..6
    assert source_range(inst(1, -1), 25.0) == (0, None)
    assert source_range(inst(11, -1), 30.0) == (12, None)  # 0.4 s in, -1 still applies the start
    assert source_range(inst(26, 50), 30.0) == (30, 60)  # [1 s, 2 s)
    assert source_range(inst(5, 5), 30.0) == (5, 6)  # never empty


@pytest.mark.parametrize(
    ("fps", "start", "end", "frames", "clamped"),
    [
        (25, 3, 7, list(range(2, 7)), False),
        (25, 11, -1, list(range(10, 40)), False),
        (25, 30, 60, list(range(29, 40)), True),  # end past the last frame
        (30, 1, 25, list(range(0, 30)), False),  # one second at 25 fps = 30 frames at 30
        (30, 26, -1, list(range(30, 45)), False),
        (30, 21, 40, list(range(24, 45)), True),
    ],
)
def test_cut_video_keeps_exactly_the_range(clips, tmp_path, fps, start, end, frames, clamped):
    cut = Cut(inst(start, end), tmp_path / "out.mp4")
    cut_video(clips[fps], [cut], pick_encoder())
    assert not cut.error
    assert bool(cut.clamped) == clamped
    assert levels_of(cut.path) == frames
    assert probe(cut.path, expected=len(frames)).frames == len(frames)
    # the loader, cutting the untrimmed file itself (data.trimmed=false), sees the same frames
    loaded, _ = read_frames(clips[fps], *cut.inst.time_range())
    assert [round(float(f.to_ndarray(format="gray").mean()) / STEP) for f in loaded] == frames


def test_one_pass_serves_many_cuts_and_flags_a_start_past_the_end(clips, tmp_path):
    cuts = [
        Cut(inst(1, 10), tmp_path / "a.mp4"),
        Cut(inst(5, 20), tmp_path / "b.mp4"),  # overlaps a
        Cut(inst(39, -1), tmp_path / "c.mp4"),
        Cut(inst(45, -1), tmp_path / "d.mp4"),  # starts after the 40th frame
    ]
    total = cut_video(clips[25], cuts, pick_encoder())
    assert total == 40
    assert levels_of(cuts[0].path) == list(range(0, 10))
    assert levels_of(cuts[1].path) == list(range(4, 20))
    assert levels_of(cuts[2].path) == [38, 39]
    assert "past the video's end" in cuts[3].error and not cuts[3].path.exists()


# --- raw/ -> videos/ ---------------------------------------------------------------------------

INDEX = {
    "book": [
        {"video_id": "07074", "bbox": [82, 11, 212, 192]},  # an mp4, whole: kept as is
        {"video_id": "90002", "split": "val"},  # truncated
        {"video_id": "90003", "split": "test"},  # an HTML page saved as .mp4
        {"video_id": "90012", "frame_start": 20, "frame_end": 500},  # end past the last frame
    ],
    "drink": [
        {"video_id": "09848", "split": "val"},
        {"video_id": "90014", "split": "test"},  # not an mp4 (AVI): re-encoded
        {"video_id": "90015", "split": "val"},  # Flash (.swf, as aslpro.com serves)
        {"video_id": "90001"},  # never downloaded
        {"video_id": "90013", "frame_start": 400, "split": "test"},  # starts past the end
    ],
    "computer": [  # two signs cut from one 24 fps video, as on YouTube
        {"video_id": "90007", "frame_start": 1, "frame_end": 20},
        {"video_id": "90008", "frame_start": 21, "split": "test"},
    ],
}


def make_raw_root(root: Path, clips: Path) -> Path:
    glosses = {g: [{"url": f"http://h/{i['video_id']}", **i} for i in v] for g, v in INDEX.items()}
    glosses["computer"][1]["url"] = glosses["computer"][0]["url"]  # one url, one raw file
    write_index(root / INDEX_FILE, glosses)
    raw = root / "raw"
    raw.mkdir()
    shutil.copy(clips / "07074.mp4", raw / "07074.mp4")
    shutil.copy(clips / "07074.mp4", raw / "90012.mp4")
    shutil.copy(clips / "09848.mp4", raw / "09848.mp4")
    shutil.copy(clips / "07074.mp4", raw / "90013.mp4")
    shutil.copy(clips / "22113.mp4", raw / "90007.mp4")
    data = (clips / "05743.mp4").read_bytes()
    (raw / "90002.mp4").write_bytes(data[: len(data) // 3])
    (raw / "90003.mp4").write_bytes(HTML_PAGE)
    write_video(raw / "90014.avi", [STEP * i for i in range(12)], size=(48, 32), codec="mpeg4")
    with av.open(str(raw / "90015.swf"), "w", format="swf") as out:  # FLV1 video in SWF
        stream = out.add_stream("flv", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(10):
            image = np.full((32, 48, 3), STEP * 4 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return root


def test_prepare_cuts_converts_probes_and_quarantines(shared_wlasl, tmp_path):
    root = make_raw_root(tmp_path / "wlasl", shared_wlasl / "clips")
    rows = prepare(root, subset=None, workers=2, progress=False)

    status = {v: r["status"] for v, r in rows.items()}
    assert status == {
        "07074": "ok",
        "90002": "quarantined",
        "90003": "quarantined",
        "90012": "ok",
        "09848": "ok",
        "90014": "ok",
        "90015": "ok",
        "90001": "no_raw",
        "90013": "quarantined",
        "90007": "ok",
        "90008": "ok",
    }
    videos = root / "videos"
    assert sorted(p.name for p in videos.iterdir()) == [
        f"{v}.mp4" for v in sorted(v for v, s in status.items() if s == "ok")
    ]
    assert (videos / "07074.mp4").read_bytes() == (root / "raw/07074.mp4").read_bytes()
    # 07074 has 38 frames at 29.97 fps: 25-fps frames 20..500 -> source frames 23..37
    assert rows["90012"]["frames"] == "15" and "clamped" in rows["90012"]["reason"]
    # 22113 has 76 frames at 24 fps: [0, 0.8 s) -> 19 frames, [0.8 s, end) -> 57
    assert (rows["90007"]["frames"], rows["90008"]["frames"]) == ("19", "57")
    with av.open(str(videos / "90014.mp4")) as c:  # AVI/MPEG-4 became an H.264 mp4
        assert c.streams.video[0].codec_context.name in ("h264", "libx264", "mpeg4")
        assert "mp4" in c.format.name
    assert levels_of(videos / "90014.mp4") == list(range(12))
    assert rows["90015"]["frames"] == "10" and rows["90015"]["raw"] == "90015.swf"
    assert "past the video's end" in rows["90013"]["reason"]
    assert "decod" in rows["90002"]["reason"] or "probe" in rows["90002"]["reason"]
    assert rows["90003"]["reason"]
    assert rows["90001"]["reason"] == "not downloaded"
    quarantined = sorted(p.name for p in (root / "quarantine").iterdir())
    assert quarantined == ["90002.mp4", "90003.mp4", "90013.mp4"]
    assert not list(videos.glob(".*"))  # no temporaries left
    missing = (root / "missing.txt").read_text().splitlines()
    assert missing == ["90001", "90002", "90003", "90013"]

    # what it wrote reads through the loader as is (data.trimmed=true)
    dm = WLASLDataModule(str(root), subset=None, num_frames=4, image_size=32, num_workers=0)
    for split in ("train", "val", "test"):
        dataset = dm.dataset(split)
        for i in range(len(dataset)):
            item = dataset[i]
            assert "error" not in item, item
            assert item["frames"].shape == (4, 3, 32, 32)

    # idempotent: nothing redone, the same manifest
    before = (root / "prepare.csv").read_text()
    stamps = {p.name: p.stat().st_mtime_ns for p in videos.iterdir()}
    prepare(root, subset=None, workers=2, progress=False)
    assert (root / "prepare.csv").read_text() == before
    assert {p.name: p.stat().st_mtime_ns for p in videos.iterdir()} == stamps


def test_encoders_close_as_their_cuts_end(clips, tmp_path, monkeypatch):
    """A YouTube video may hold 100+ signs: one open encoder each would exhaust memory."""
    open_now, most = [0], [0]

    class Counted(trim._Writer):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            open_now[0] += 1
            most[0] = max(most[0], open_now[0])

        def close(self) -> None:
            super().close()
            open_now[0] -= 1

    monkeypatch.setattr(trim, "_Writer", Counted)
    cuts = [Cut(inst(4 * k + 1, 4 * k + 4), tmp_path / f"{k}.mp4") for k in range(10)]
    cut_video(clips[25], cuts, pick_encoder())
    assert most[0] == 1 and open_now[0] == 0
    for k, cut in enumerate(cuts):
        assert not cut.error and cut.written == 4
        assert levels_of(cut.path) == list(range(4 * k, 4 * k + 4))


def test_odd_sized_sources_are_padded_not_scaled(tmp_path):
    src = tmp_path / "odd.avi"
    with av.open(str(src), "w") as out:  # 33x25: MPEG-4 part 2 takes odd sizes, yuv420p does not
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 33, 25, "yuv420p"
        for i in range(5):
            image = np.full((25, 33, 3), STEP * 10 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    cut = Cut(inst(1, -1), tmp_path / "out.mp4")
    cut_video(src, [cut], pick_encoder())
    assert not cut.error, cut.error
    result = probe(cut.path, expected=5)
    assert (result.width, result.height) == (34, 26)


def test_force_redoes_and_keeps_videos_whose_source_is_gone(shared_wlasl, tmp_path):
    root = make_raw_root(tmp_path / "wlasl", shared_wlasl / "clips")
    first = prepare(root, subset=None, workers=2, progress=False)
    cut = root / "videos" / "90007.mp4"
    stamp = cut.stat().st_mtime_ns
    (root / "raw" / "09848.mp4").unlink()  # deleted to save space after preparing
    again = prepare(root, subset=None, workers=2, force=True, progress=False)
    assert {v: r["status"] for v, r in again.items()} == {v: r["status"] for v, r in first.items()}
    assert cut.stat().st_mtime_ns != stamp  # re-made
    assert (root / "videos" / "09848.mp4").is_file()  # probed and kept


def test_entry_config_reuses_the_data_group(tmp_path):
    cfg = compose_cfg("prepare", ["data.root=/data/wlasl", "data.subset=null"], tmp_path)
    assert (cfg.data.root, cfg.data.subset, cfg.data.split_file) == ("/data/wlasl", None, None)
    assert not cfg.force and cfg.codec is None
