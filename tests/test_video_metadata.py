"""Every real clip loads: container or stream metadata that is not valid UTF-8 never stops
decoding (issue 11: 11 real WLASL100 clips were skipped for it)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from slr.acquisition.health import readable
from slr.acquisition.trim import probe
from slr.data.dataset import ClipDataset
from slr.data.transforms import ClipTransform
from slr.data.video import open_video, read_frames
from slr.data.wlasl import read_subset

WLASL100 = Path(__file__).resolve().parents[1].parent / "shared" / "wlasl100"


def write_bad_metadata_video(path: Path, frames: int = 6) -> Path:
    """An H.264 clip whose container title and stream handler name hold latin-1 bytes (0xE9,
    0xFF): not valid UTF-8, as in real WLASL files."""
    with av.open(str(path), "w", metadata_encoding="latin-1") as out:
        out.metadata["title"] = "caf\xe9 \xff"
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.metadata["handler_name"] = "vid\xe9o"
        for i in range(frames):
            image = np.full((48, 64, 3), 30 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


def test_strict_pyav_rejects_the_written_file(tmp_path):
    # the file really is one PyAV's default open fails on, so the tests below can fail
    path = write_bad_metadata_video(tmp_path / "bad.mp4")
    with pytest.raises(UnicodeDecodeError), av.open(str(path)):
        pass


def test_invalid_utf8_metadata_decodes_everywhere(tmp_path):
    path = write_bad_metadata_video(tmp_path / "bad.mp4", frames=6)
    with open_video(path) as container:
        assert "caf" in container.metadata["title"]  # kept, with a replacement character
    frames, fps = read_frames(path)
    assert (len(frames), fps) == (6, 25.0)
    assert probe(path).frames == 6  # prepare's and doctor's full check
    assert readable(path, "open") == ""  # doctor's default check


def _real_instances():
    if not (WLASL100 / "nslt_100.json").is_file():
        pytest.skip(f"real WLASL100 clips not found at {WLASL100} (expected ../shared/wlasl100)")
    index = read_subset(WLASL100 / "WLASL_v0.3.json", 100, WLASL100 / "nslt_100.json")
    videos = WLASL100 / "videos"
    return [i for s in index.splits.values() for i in s if (videos / f"{i.video_id}.mp4").is_file()]


def _strict_open_fails(path: Path) -> bool:
    try:
        with av.open(str(path)):
            return False
    except UnicodeDecodeError:
        return True


@pytest.mark.slow
def test_every_real_wlasl100_clip_loads():
    instances = _real_instances()
    assert len(instances) == 814
    videos = WLASL100 / "videos"
    bad = [i.video_id for i in instances if _strict_open_fails(videos / f"{i.video_id}.mp4")]
    assert len(bad) == 11  # the clips PyAV's default open rejects are among them
    # every clip through the training loader, every frame decoded: none is skipped
    clips = ClipDataset(instances, videos, 4, ClipTransform(image_size=32))
    assert {item["video_id"]: item["error"] for item in clips if "error" in item} == {}
