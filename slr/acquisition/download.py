"""Fetch the source videos the WLASL index points at into ROOT/raw/, each url once, in parallel,
resumably, keeping a per-video status manifest (ROOT/download.csv) and ROOT/missing.txt."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tqdm import tqdm

from slr.acquisition.fetch import (
    ERROR,
    OK,
    PERMANENT,
    SKIPPED,
    YTDLP_HOSTS,
    YTDLP_NOTE,
    HostLimiter,
    Result,
    fetch_http,
    fetch_ytdlp,
    matches_host,
    ytdlp_available,
)
from slr.acquisition.manifest import Manifest, status_table, writable_folder, write_missing
from slr.data.wlasl import INDEX_FILE, SPLITS, Instance, load_index, read_subset

log = logging.getLogger(__name__)

RAW_DIR = "raw"
MANIFEST_FILE = "download.csv"
COLUMNS = (
    *("video_id", "gloss", "label", "split", "source", "url", "status", "reason", "bytes"),
    "file",  # the raw file under ROOT/raw/ (several videos may share one)
)


@dataclass
class Source:
    """One url and the videos that share it (a YouTube video often holds several signs)."""

    url: str
    key: str  # the raw file's name without extension
    video_ids: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or ""

    @property
    def via_ytdlp(self) -> bool:
        return matches_host(self.host, YTDLP_HOSTS)


def source_key(url: str, first_video_id: str) -> str:
    """The raw file's stem: `yt_<id>` for YouTube (shared by the signs cut from it), the first
    video_id using the url otherwise (so names match the official kit's raw_videos/)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    yt_id = None
    if matches_host(host, ("youtu.be",)):
        yt_id = parsed.path.strip("/").split("/")[0]
    elif matches_host(host, ("youtube.com",)):
        yt_id = (parse_qs(parsed.query).get("v") or [None])[0]
    if yt_id and all(c.isalnum() or c in "-_" for c in yt_id):
        return f"yt_{yt_id}"
    if matches_host(host, YTDLP_HOSTS):
        return "url_" + hashlib.sha1(url.encode()).hexdigest()[:12]
    return first_video_id


def group_sources(entries: list[dict]) -> dict[str, Source]:
    """url -> Source over the whole index, so raw names do not depend on the subset chosen."""
    sources: dict[str, Source] = {}
    keys: set[str] = set()
    for entry in entries:
        for raw in entry["instances"]:
            url, video_id = str(raw["url"]).strip(), str(raw["video_id"])
            if url not in sources:
                key = source_key(url, video_id)
                # youtu.be/X and youtube.com/watch?v=X would share a name (and .part file)
                key = video_id if key in keys else key
                keys.add(key)
                sources[url] = Source(url, key)
            sources[url].video_ids.append(video_id)
    return sources


# ---------------------------------------------------------------------------------------------
# The run over a subset


def read_scope(
    root: Path, subset: int | None, split_file: str | Path | None
) -> tuple[list[dict], dict[str, Instance]]:
    """The whole index (raw names and urls come from it) and the instances of the subset, by
    video_id; `split_file` is absolute or relative to `root`, as in the data config."""
    if split_file is not None and not Path(split_file).is_absolute():
        split_file = root / split_file
    scope = read_subset(root / INDEX_FILE, subset, split_file)
    instances = {i.video_id: i for split in SPLITS for i in scope.splits[split]}
    return load_index(root / INDEX_FILE), instances


def complete_files(raw_dir: Path) -> dict[str, Path]:
    """stem -> complete raw file. Hidden names are temporaries and never count."""
    return {p.stem: p for p in raw_dir.iterdir() if p.is_file() and not p.name.startswith(".")}


def _clean_temporaries(raw_dir: Path) -> None:
    """Remove what a killed run left half-written (.part files, yt-dlp work folders)."""
    for p in raw_dir.glob(".*"):
        if p.name.endswith(".part"):
            p.unlink(missing_ok=True)
        elif p.name.endswith(".ytdlp") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def download(
    root: str | Path,
    subset: int | None = 100,
    split_file: str | Path | None = None,
    workers: int = 8,
    rate_per_host: float = 2.0,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    recheck_dead: bool = False,
    youtube: bool = True,
    ytdlp_format: str = "bv*[height<=720]/b[height<=720]/bv*/b",
    progress: bool = True,
) -> dict[str, dict[str, str]]:
    """Download the sources of a subset's videos into ROOT/raw/ and keep ROOT/download.csv
    and ROOT/missing.txt up to date. Returns the manifest rows of the subset, by video_id.

    Args:
        root: the dataset folder holding WLASL_v0.3.json.
        subset, split_file: which videos, as in the data config (None = every gloss).
        workers: downloads in flight at once.
        rate_per_host: request starts per second to any one host.
        timeout: seconds to connect, and to wait for each block of data.
        retries: further attempts after a timeout, a 429, a 5xx or a dropped connection.
        backoff, max_backoff: the first wait between attempts (doubled each time), its cap;
            a server's Retry-After wins up to the cap.
        recheck_dead: also try again urls an earlier run found dead or not a video.
        youtube: fetch YouTube (and other yt-dlp sites); False marks them skipped.
        ytdlp_format: yt-dlp's format selector (video only, so no ffmpeg merge is needed).
        progress: show a progress bar.
    """
    root = Path(root)
    entries, instances = read_scope(root, subset, split_file)
    meta = {
        str(raw["video_id"]): {"url": str(raw["url"]).strip(), "source": raw.get("source", "")}
        for entry in entries
        for raw in entry["instances"]
    }
    sources = group_sources(entries)
    raw_dir = root / RAW_DIR
    for folder in (root, raw_dir):
        writable_folder(folder, "slr.download")
    _clean_temporaries(raw_dir)
    manifest = Manifest(root / MANIFEST_FILE, COLUMNS)

    for video_id, inst in instances.items():
        m = meta[video_id]
        manifest.update(
            video_id,
            gloss=inst.gloss,
            label=inst.label,
            split=inst.split,
            source=m["source"],
            url=m["url"],
        )

    existing = complete_files(raw_dir)
    todo: list[Source] = []
    have_ytdlp = ytdlp_available()
    for url in dict.fromkeys(meta[v]["url"] for v in instances):  # each url once, index order
        src = sources[url]
        mine = [v for v in src.video_ids if v in instances]
        previous = manifest.get(mine[0]) or {}
        result = _settled(src, existing, previous, recheck_dead, youtube, have_ytdlp)
        if result is None:
            todo.append(src)
            continue
        for v in mine:
            manifest.update(v, **_row(result))
    skipped_yt = sum(1 for v in instances if manifest.get(v)["reason"] == YTDLP_NOTE)
    if skipped_yt:
        log.warning("%d videos are on YouTube and %s", skipped_yt, YTDLP_NOTE)
    log.info(
        "%d videos, %d distinct urls: %d to fetch, the rest settled by an earlier run",
        len(instances),
        len(dict.fromkeys(meta[v]["url"] for v in instances)),
        len(todo),
    )

    limiter = HostLimiter(rate_per_host)
    stop = threading.Event()  # set on Ctrl-C: the downloads under way give up, not retry

    def fetch(src: Source) -> Result:
        try:
            if src.via_ytdlp:
                limiter.wait(src.host)
                return fetch_ytdlp(src.url, raw_dir, src.key, timeout, retries, ytdlp_format)
            return fetch_http(
                src.url, raw_dir, src.key, timeout, retries, backoff, max_backoff, limiter, stop
            )
        except Exception as e:  # one bad url must not end a run of thousands
            log.exception("unexpected failure on %s", src.url)
            return Result(ERROR, f"{type(e).__name__}: {e}")

    offline = _OfflineGuard()

    def record(src: Source, result: Result) -> bool:
        for v in src.video_ids:
            if v in instances:
                manifest.update(v, **_row(result))
        return offline.stop(src, result)

    try:
        unsettled = _run(todo, fetch, workers, progress, record, stop)
        if unsettled:
            log.error(
                "stopped: none of the first %d urls' hosts (%d hosts) could be resolved; is this "
                "machine offline? Nothing else was tried; run again once it is online",
                offline.failures,
                len(offline.hosts),
            )
            record_all = Result(SKIPPED, "not tried: no host could be resolved (offline?)")
            for src in unsettled:
                record(src, record_all)
    finally:  # Ctrl-C included: what finished is in the manifest
        manifest.flush()
    rows = {v: manifest.get(v) for v in instances}
    missing = write_missing(root, (v for v, r in rows.items() if r["status"] != OK))
    log.info("download summary (videos):\n%s", status_table(rows.values(), SPLITS))
    log.info("by source:\n%s", source_table(rows.values()))
    log.info("manifest: %s; %s lists the videos not downloaded", manifest.path, missing)
    return rows


def source_table(rows) -> str:
    """Videos per source site: how many are ok, and the commonest failure."""
    per: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        per[row["source"] or "?"][row["status"]] += 1
    lines = [f"{'source':16} {'videos':>7} {'ok':>7}  most common failure"]
    for source, counts in sorted(per.items(), key=lambda kv: -sum(kv[1].values())):
        failures = [(n, s) for s, n in counts.items() if s != OK]
        worst = f"{max(failures)[1]} ({max(failures)[0]})" if failures else ""
        lines.append(f"{source:16} {sum(counts.values()):7d} {counts[OK]:7d}  {worst}")
    return "\n".join(lines)


def _settled(
    src: Source,
    existing: dict[str, Path],
    previous: dict[str, str],
    recheck_dead: bool,
    youtube: bool,
    have_ytdlp: bool,
) -> Result | None:
    """The source's result without fetching it, or None when it must be fetched."""
    if src.key in existing:  # complete: only finished downloads get a visible name
        file = existing[src.key]
        return Result(OK, file=file.name, bytes=file.stat().st_size)
    if previous.get("status") in PERMANENT and not recheck_dead:
        return Result(previous["status"], previous["reason"], bytes=int(previous["bytes"] or 0))
    if src.via_ytdlp and not youtube:
        return Result(SKIPPED, "youtube=false")
    if src.via_ytdlp and not have_ytdlp:
        return Result(SKIPPED, YTDLP_NOTE)
    scheme = urlparse(src.url).scheme
    if scheme not in ("http", "https"):
        return Result(SKIPPED, f"unsupported url scheme {scheme!r}")
    return None


def _row(result: Result) -> dict[str, object]:
    return {
        "status": result.status,
        "reason": result.reason,
        "bytes": result.bytes or "",
        "file": result.file,
    }


class _OfflineGuard:
    """Says stop when the run's first `limit` results are all unresolvable hosts, over several
    hosts: the machine is offline, and trying 20k urls would only take time."""

    def __init__(self, limit: int = 20, min_hosts: int = 3) -> None:
        self.limit, self.min_hosts = limit, min_hosts
        self.failures, self.hosts, self.seen_other = 0, set(), False

    def stop(self, src: Source, result: Result) -> bool:
        if self.seen_other:
            return False
        if not ("cannot resolve host" in result.reason or "Name or service" in result.reason):
            self.seen_other = True
            return False
        self.failures += 1
        self.hosts.add(src.host)
        return self.failures >= self.limit and len(self.hosts) >= self.min_hosts


def _run(
    todo: list[Source],
    fetch: Callable[[Source], Result],
    workers: int,
    progress: bool,
    done: Callable[[Source, Result], bool],
    interrupt: threading.Event,
) -> list[Source]:
    """Fetch in a thread pool; record each result as it lands (here, in one thread). `done`
    returning True stops the run: what is in flight finishes and is recorded, the rest is
    returned unfetched. On Ctrl-C, `interrupt` is set so the fetches under way end soon (the
    pool waits for them) and their partial files are left for the next run to clean."""
    if not todo:
        return []
    with (
        tqdm(total=len(todo), desc="downloading", unit="url", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
    ):
        pending = {pool.submit(fetch, src): src for src in todo}
        stop = False
        try:
            for future in as_completed(list(pending)):
                if future.cancelled():
                    continue
                src, result = pending.pop(future), future.result()
                bar.update()
                bar.set_postfix_str(result.status, refresh=False)
                if done(src, result) and not stop:
                    stop = True
                    for other in pending:  # the ones not started; those running finish
                        other.cancel()
        except KeyboardInterrupt:
            log.warning("interrupted: finished downloads are kept; run again to resume")
            interrupt.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return list(pending.values())
