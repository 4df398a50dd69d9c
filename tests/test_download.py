"""slr.download against a local HTTP server serving real WLASL clips and the web's failures."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slr.acquisition import download as dl
from slr.acquisition import fetch
from slr.data.wlasl import INDEX_FILE
from tests.helpers import compose_cfg
from tests.wlasl_server import start_server, write_index

YOUTUBE = "https://www.youtube.com/watch?v=abcdefghijk"
# gloss -> instances; urls starting with "/" are served by the local server
INDEX = {
    "book": [
        {"video_id": "07074", "url": "/clips/07074.mp4"},
        {"video_id": "90001", "url": "/dead/90001.mp4"},
        {"video_id": "90002", "url": "/truncated/05743.mp4", "split": "val"},
        {"video_id": "90003", "url": "/html.mp4", "split": "test"},
    ],
    "drink": [
        {"video_id": "09848", "url": "/clips/09848.mp4"},
        {"video_id": "90004", "url": "/flaky429/13640.mp4", "split": "val"},
        {"video_id": "90005", "url": "/slow.mp4", "split": "test"},
        {"video_id": "90006", "url": "/error500.mp4"},
    ],
    "computer": [  # two signs cut from one video, as on YouTube
        {"video_id": "90007", "url": "/clips/22113.mp4", "frame_start": 1, "frame_end": 20},
        {"video_id": "90008", "url": "/clips/22113.mp4", "frame_start": 21, "split": "test"},
        {"video_id": "90009", "url": YOUTUBE, "split": "val"},
        {"video_id": "90010", "url": "/html-as-video.mp4", "split": "val"},
        {"video_id": "90011", "url": "/forbidden.mp4", "split": "test"},
        {"video_id": "90012", "url": "/cut/14893.mp4", "split": "test"},
    ],
}
EXPECTED = {
    "07074": "ok",
    "90001": "dead",
    "90002": "ok",  # the server's copy is broken but complete: slr.prepare quarantines it
    "90003": "not_video",
    "09848": "ok",
    "90004": "ok",
    "90005": "error",
    "90006": "http_error",
    "90007": "ok",
    "90008": "ok",
    "90009": "skipped",
    "90010": "not_video",
    "90011": "http_error",
    "90012": "error",
}
FAST = {
    "timeout": 0.5,
    "retries": 1,
    "backoff": 0.01,
    "rate_per_host": 1000.0,
    "workers": 4,
    "progress": False,
    "youtube": False,
}


@pytest.fixture(scope="module")
def server(shared_wlasl):
    server = start_server(shared_wlasl / "clips")
    server.slow_delay = 2.0
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def make_root(root: Path, base: str, index: dict = INDEX) -> Path:
    glosses = {
        g: [{**i, "url": base + i["url"] if i["url"].startswith("/") else i["url"]} for i in insts]
        for g, insts in index.items()
    }
    write_index(root / INDEX_FILE, glosses)
    return root


def test_statuses_manifest_and_missing(server, tmp_path, shared_wlasl):
    root = make_root(tmp_path / "wlasl", server.base)
    before = dict(server.hits)
    rows = dl.download(root, subset=None, **FAST)
    hits = {path: n - before.get(path, 0) for path, n in server.hits.items()}

    assert {v: r["status"] for v, r in rows.items()} == EXPECTED
    assert hits["/flaky429/13640.mp4"] == 2  # a 429, then the clip
    assert hits["/dead/90001.mp4"] == hits["/forbidden.mp4"] == 1  # 404 and 403: no retry
    assert hits["/error500.mp4"] == 2  # 5xx: retries=1
    assert "404" in rows["90001"]["reason"]
    assert "web page" in rows["90003"]["reason"]
    assert "web page" in rows["90010"]["reason"]  # sniffed, whatever the content type says
    assert "timed out" in rows["90005"]["reason"]
    assert "500" in rows["90006"]["reason"] and "2 attempts" in rows["90006"]["reason"]
    assert "403" in rows["90011"]["reason"]
    assert "2 attempts" in rows["90012"]["reason"], rows["90012"]["reason"]
    assert hits["/cut/14893.mp4"] == 2  # a dropped connection is retried
    assert rows["90009"]["reason"] == "youtube=false"
    # the shared url was fetched once, into one file both rows name
    assert hits["/clips/22113.mp4"] == 1
    assert rows["90007"]["file"] == rows["90008"]["file"] == "90007.mp4"
    clip = shared_wlasl / "clips" / "07074.mp4"
    assert (root / "raw" / "07074.mp4").read_bytes() == clip.read_bytes()
    assert rows["07074"]["bytes"] == str(clip.stat().st_size)
    # only complete files, no temporaries, nothing for the failures
    names = sorted(p.name for p in (root / "raw").iterdir())
    assert names == ["07074.mp4", "09848.mp4", "90002.mp4", "90004.mp4", "90007.mp4"]
    # the manifest on disk matches, with every column the issue names
    manifest = dl.Manifest(root / dl.MANIFEST_FILE, dl.COLUMNS)
    assert {v: r["status"] for v, r in manifest.rows.items()} == EXPECTED
    header = (root / dl.MANIFEST_FILE).read_text().splitlines()[0].split(",")
    assert header[:9] == ["video_id", "gloss", "label", "split", "source", "url", "status"] + [
        "reason",
        "bytes",
    ]
    missing = (root / "missing.txt").read_text().splitlines()
    assert missing == sorted(v for v, s in EXPECTED.items() if s != "ok")


def test_rerun_fetches_nothing_twice(server, tmp_path):
    root = make_root(tmp_path / "wlasl", server.base)
    dl.download(root, subset=None, **FAST)
    before = (root / dl.MANIFEST_FILE).read_bytes()
    hits = dict(server.hits)
    dl.download(root, subset=None, **FAST)
    assert (root / dl.MANIFEST_FILE).read_bytes() == before
    again = {p: n - hits.get(p, 0) for p, n in server.hits.items() if n != hits.get(p, 0)}
    # complete files and permanent failures (404, web pages) are settled; transient ones retried
    assert set(again) == {"/slow.mp4", "/error500.mp4", "/forbidden.mp4", "/cut/14893.mp4"}


def test_youtube_without_ytdlp_says_how_to_get_it(server, tmp_path, monkeypatch, caplog):
    root = make_root(tmp_path / "wlasl", server.base, {"hello": INDEX["computer"][2:3]})
    monkeypatch.setattr(dl, "ytdlp_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        rows = dl.download(root, subset=None, **{**FAST, "youtube": True})
    assert rows["90009"]["status"] == "skipped"
    assert "pip install" in rows["90009"]["reason"] and "yt-dlp" in rows["90009"]["reason"]
    assert "yt-dlp not installed" in caplog.text


def test_ytdlp_path_on_a_direct_link(server, tmp_path, shared_wlasl):
    pytest.importorskip("yt_dlp", reason="yt-dlp is the optional extra 'download'")
    raw = tmp_path / "raw"
    raw.mkdir()
    result = fetch.fetch_ytdlp(f"{server.base}/clips/07074.mp4", raw, "yt_test", 5, 1, "b/bv*")
    assert result.status == "ok", result.reason
    assert (raw / result.file).read_bytes() == (shared_wlasl / "clips/07074.mp4").read_bytes()
    assert [p.name for p in raw.iterdir()] == [result.file]  # its work folder is gone
    dead = fetch.fetch_ytdlp(f"{server.base}/dead/x.mp4", raw, "yt_dead", 5, 0, "b/bv*")
    assert dead.status == "dead", dead.reason


def test_source_keys_and_sniffing():
    assert dl.source_key("https://www.youtube.com/watch?v=0UsjUE-TXns", "1") == "yt_0UsjUE-TXns"
    assert dl.source_key("https://youtu.be/3-GrhsVs830", "1") == "yt_3-GrhsVs830"
    assert dl.source_key("https://www.handspeak.com/word/b/book.mp4", "07070") == "07070"
    same_video = [{"video_id": "1", "url": "https://youtu.be/3-GrhsVs830"}]
    same_video += [{"video_id": "2", "url": "https://www.youtube.com/watch?v=3-GrhsVs830"}]
    sources = dl.group_sources([{"gloss": "g", "instances": same_video}])
    assert [s.key for s in sources.values()] == ["yt_3-GrhsVs830", "2"]  # two files, two names
    mp4 = b"\x00\x00\x00\x18ftypmp42"
    assert fetch.sniff(mp4, "video/mp4", "http://x/a.mp4") == (".mp4", "")
    assert fetch.sniff(mp4, "video/quicktime", "http://x/a.mov") == (".mov", "")
    assert fetch.sniff(b"CWS\x08", "application/x-shockwave-flash", "http://x/a.swf")[0] == ".swf"
    assert fetch.sniff(b"  <html><body>", "video/mp4", "http://x/a.mp4")[0] is None
    assert fetch.sniff(b"", "video/mp4", "http://x/a.mp4") == (None, "empty response")


def test_an_unwritable_root_fails_up_front(tmp_path):
    root = make_root(tmp_path / "wlasl", "http://127.0.0.1:9")
    (root / "raw").write_text("a file where the folder should be")
    with pytest.raises(PermissionError, match=r"slr.download cannot write to .*raw.*data\.root"):
        dl.download(root, subset=None, **FAST)
    assert not (root / dl.MANIFEST_FILE).exists()  # nothing tried


def test_entry_config_reuses_the_data_group(tmp_path):
    cfg = compose_cfg("download", ["data.root=/data/wlasl", "data.subset=300"], tmp_path)
    assert (cfg.data.root, cfg.data.subset, cfg.data.split_file) == ("/data/wlasl", 300, None)
    assert cfg.retries >= 1 and cfg.timeout > 0 and cfg.rate_per_host > 0


KILL_INDEX = {  # no slow route: the three runs must see the same web
    g: [i for i in insts if i["url"] not in ("/slow.mp4", YOUTUBE)] for g, insts in INDEX.items()
}
KILL_INDEX["drink"].insert(1, {"video_id": "90020", "url": "/stall/24941.mp4"})


def _run_cli(root: Path, timeout: float = 5) -> subprocess.Popen:
    args = [f"{k}={v}" for k, v in {**FAST, "workers": 1, "timeout": timeout}.items()]
    return subprocess.Popen(
        [sys.executable, "-m", "slr.download", f"data.root={root}", "data.subset=null", *args]
        + [f"hydra.run.dir={root.parent / 'hydra'}"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # a shell without job control starts background jobs with Ctrl-C ignored; undo that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@contextlib.contextmanager
def _stalled_cli_run(server, root: Path, timeout: float = 5):
    """slr.download on `root` in a subprocess, yielded once it is half-way through the stalled
    download (raw/.90020.part); the stall is released and the process reaped on exit."""
    server.release.clear()
    server.stall.set()
    proc = _run_cli(root, timeout)
    part = root / "raw" / ".90020.part"
    try:
        deadline = time.monotonic() + 60
        while not (part.is_file() and part.stat().st_size > 0):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never reached the stalled download"
            time.sleep(0.05)
        yield proc
    finally:
        server.stall.clear()
        server.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


def test_killed_run_resumes_to_the_same_result(server, tmp_path):
    fast = {**FAST, "timeout": 5}
    # reference: one uninterrupted run
    whole = make_root(tmp_path / "whole" / "wlasl", server.base, KILL_INDEX)
    dl.download(whole, subset=None, **fast)

    # a run killed (SIGKILL) in the middle of a file
    killed = make_root(tmp_path / "killed" / "wlasl", server.base, KILL_INDEX)
    with _stalled_cli_run(server, killed) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    part = killed / "raw" / ".90020.part"
    assert (killed / "raw" / "07074.mp4").is_file()  # finished before the kill
    assert not (killed / "raw" / "90020.mp4").exists()  # the half file never got its name

    dl.download(killed, subset=None, **fast)
    assert not part.exists()
    assert (killed / dl.MANIFEST_FILE).read_text() == (whole / dl.MANIFEST_FILE).read_text()
    assert (killed / "missing.txt").read_text() == (whole / "missing.txt").read_text()
    files = {p.name: p.read_bytes() for p in (killed / "raw").iterdir()}
    assert files == {p.name: p.read_bytes() for p in (whole / "raw").iterdir()}


def test_ctrl_c_ends_the_download_under_way_without_retrying(server, tmp_path):
    root = make_root(tmp_path / "wlasl", server.base, KILL_INDEX)
    before = server.hits.get("/stall/24941.mp4", 0)
    with _stalled_cli_run(server, root, timeout=1) as proc:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) != 0
    # the stalled read timed out once and was not retried (retries=1 would ask again)
    assert server.hits["/stall/24941.mp4"] - before == 1
    assert (root / "raw" / "07074.mp4").is_file()  # finished before Ctrl-C
    assert not (root / "raw" / "90020.mp4").exists()


def test_stops_early_when_no_host_resolves(tmp_path, monkeypatch):
    """Offline, the first results tell: the rest is marked not tried instead of waited on."""
    glosses = {f"g{k}": [{"video_id": f"{k:05d}", "url": f"http://h{k % 5}.invalid/{k}.mp4"}]
               for k in range(60)}  # fmt: skip
    write_index(tmp_path / INDEX_FILE, glosses)
    fetched = []

    def unresolvable(url, *args, **kwargs):
        fetched.append(url)
        time.sleep(0.02)  # a lookup takes a while; the run must stop before the list ends
        return dl.Result(dl.ERROR, "cannot resolve host: [Errno -2] Name or service not known")

    monkeypatch.setattr(dl, "fetch_http", unresolvable)
    rows = dl.download(tmp_path, subset=None, **{**FAST, "workers": 1})
    assert 20 <= len(fetched) < 60
    skipped = [r for r in rows.values() if r["status"] == "skipped"]
    assert len(skipped) == 60 - len(fetched)
    assert all("offline" in r["reason"] for r in skipped)


def test_host_limiter_spaces_requests_per_host():
    now, slept = [0.0], []
    limiter = fetch.HostLimiter(2.0, clock=lambda: now[0], sleep=slept.append)
    for host in ("a", "a", "b", "a"):
        limiter.wait(host)
    assert slept == [0.5, 1.0]  # a: 0, 0.5, 1.0; b on its own clock
