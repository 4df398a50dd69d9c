"""slr.doctor and the data summary every run logs: nominal vs available per subset and split,
glosses without videos, unreadable files; and the whole download -> prepare -> doctor path."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from slr.acquisition.download import download
from slr.acquisition.health import scan, summary_lines
from slr.acquisition.prepare import prepare
from slr.data.datamodule import WLASLDataModule
from slr.doctor import doctor
from slr.runs.records import record_data
from tests.helpers import compose_cfg
from tests.test_download import FAST, server  # noqa: F401 (the fixture)
from tests.wlasl_server import write_index


def copy_root(tiny_root: Path, dest: Path) -> Path:
    shutil.copytree(tiny_root, dest)
    return dest


def test_scan_counts_empty_classes_and_unreadable_files(tiny_root, tmp_path):
    root = copy_root(tiny_root, tmp_path / "wlasl")
    index = json.loads((root / "WLASL_v0.3.json").read_text())
    gloss0 = index[0]["gloss"]
    train0 = [i["video_id"] for i in index[0]["instances"] if i["split"] == "train"]
    for video_id in train0:  # gloss 0 loses its training videos
        (root / "videos" / f"{video_id}.mp4").unlink()
    val1 = next(i["video_id"] for i in index[1]["instances"] if i["split"] == "val")
    (root / "videos" / f"{val1}.mp4").write_bytes(b"<html>not a video</html>")
    (root / "videos" / "99999.mp4").write_bytes(b"stray")

    report = scan(root, check="open", workers=2)
    (name,) = report["protocols"]
    summary = report["protocols"][name]
    assert name == "all 3 glosses"
    assert summary["splits"]["train"] == {"nominal": 12, "available": 8, "missing": 4}
    assert summary["splits"]["val"] == {"nominal": 6, "available": 5, "missing": 1}
    assert summary["splits"]["test"] == {"nominal": 6, "available": 6, "missing": 0}
    assert summary["classes_without_videos"] == {"train": [gloss0], "val": [], "test": []}
    assert list(report["unreadable"]) == [val1]
    assert report["not_in_index"] == ["99999"]
    text = "\n".join(summary_lines(report))
    assert f"train: no video for {gloss0}" in text and f"{val1}.mp4" in text

    # check=none only looks at names: the HTML file counts as available
    assert scan(root, check="none")["protocols"][name]["splits"]["val"]["available"] == 6


def test_scan_real_index_and_i3d_split_files(shared_wlasl, tmp_path):
    root = tmp_path / "wlasl"
    (root / "videos").mkdir(parents=True)
    for name in ("WLASL_v0.3.json", "nslt_100.json", "nslt_300.json"):
        (root / name).symlink_to(shared_wlasl / name)
    for clip in (shared_wlasl / "clips").glob("*.mp4"):
        (root / "videos" / clip.name).symlink_to(clip)
    clips = json.loads((shared_wlasl / "clips" / "manifest.json").read_text())

    report = scan(root, check="full", workers=2)
    protocols = report["protocols"]
    assert list(protocols) == [
        "WLASL100",
        "WLASL300",
        "WLASL1000",
        "WLASL2000",
        "WLASL100 nslt_100.json",
        "WLASL300 nslt_300.json",
    ]
    w100 = protocols["WLASL100"]["splits"]
    assert [w100[s]["nominal"] for s in ("train", "val", "test")] == [1442, 338, 258]
    for split in ("train", "val", "test"):
        expected = sum(1 for c in clips if c["split"] == split)
        assert w100[split]["available"] == expected
    nslt = json.loads((shared_wlasl / "nslt_100.json").read_text())
    i3d = protocols["WLASL100 nslt_100.json"]["splits"]
    for split in ("train", "val", "test"):
        expected = sum(1 for c in clips if nslt.get(c["video_id"], {}).get("subset") == split)
        assert i3d[split]["available"] == expected
    assert protocols["WLASL300 nslt_300.json"]["unknown_split_ids"] == 1
    assert report["unreadable"] == {}
    assert len(protocols["WLASL100"]["classes_without_videos"]["test"]) == 100 - sum(
        1 for c in clips if c["split"] == "test"
    )


def test_doctor_entry_writes_json(tiny_root, tmp_path):
    cfg = compose_cfg(
        "doctor",
        [f"data.root={tiny_root}", f"output={tmp_path / 'doctor.json'}", "check=none"],
        tmp_path / "run",
    )
    report = doctor(cfg)
    saved = json.loads((tmp_path / "doctor.json").read_text())
    assert saved == json.loads((tmp_path / "run" / "doctor.json").read_text())
    assert saved["protocols"] == report["protocols"]


def test_runs_log_the_same_summary(tiny_root, tmp_path, caplog):
    root = copy_root(tiny_root, tmp_path / "wlasl")
    index = json.loads((root / "WLASL_v0.3.json").read_text())
    for inst in index[2]["instances"]:
        if inst["split"] == "test":
            (root / "videos" / f"{inst['video_id']}.mp4").unlink()
    dm = WLASLDataModule(str(root), subset=None, num_workers=0)
    with caplog.at_level(logging.INFO):
        counts = record_data(dm, tmp_path / "run")
    assert counts["test"] == {"nominal": 6, "available": 4, "missing": 2}
    assert counts["classes_without_videos"] == {"train": 0, "val": 0, "test": 1}
    assert counts["data"] == {"root": str(root), "subset": None, "split_file": None}
    table = "\n".join(summary_lines(scan(root, check="none")))
    assert table in caplog.text  # the same lines slr.doctor prints
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("glosses without a single video: 1 in test" in m for m in warnings), warnings


def test_download_prepare_doctor(server, tmp_path, shared_wlasl):  # noqa: F811
    """The path a user takes, end to end, on real clips behind a local server."""
    clips = json.loads((shared_wlasl / "clips" / "manifest.json").read_text())[:4]
    glosses = {
        c["gloss"]: [
            {
                "video_id": c["video_id"],
                "url": f"{server.base}/clips/{c['video_id']}.mp4",
                "split": c["split"],
                "bbox": c["bbox"],
            },
            {"video_id": f"9{c['video_id']}", "url": f"{server.base}/dead/{c['video_id']}"},
        ]
        for c in clips
    }
    broken = {"video_id": "80000", "url": f"{server.base}/truncated/05743.mp4", "split": "test"}
    glosses[clips[0]["gloss"]].append(broken)
    root = tmp_path / "wlasl"
    write_index(root / "WLASL_v0.3.json", glosses)
    fetched = download(root, subset=None, **FAST)
    assert fetched["80000"]["status"] == "ok"  # complete as served; only decoding tells
    rows = prepare(root, subset=None, workers=2, progress=False)
    assert sum(r["status"] == "ok" for r in rows.values()) == 4
    assert rows["80000"]["status"] == "quarantined"
    assert [p.name for p in (root / "quarantine").iterdir()] == ["80000.mp4"]
    report = scan(root, check="full")
    (summary,) = report["protocols"].values()
    train = sum(1 for c in clips if c["split"] == "train")
    assert summary["splits"]["train"] == {"nominal": 4 + train, "available": train, "missing": 4}
    assert summary["splits"]["test"]["missing"] >= 1
    expected = sorted([*(f"9{c['video_id']}" for c in clips), "80000"])
    assert (root / "missing.txt").read_text().split() == expected
