"""Fetch the source videos the WLASL index points at into ROOT/raw/: plain HTTP(S) with the
standard library, YouTube through yt-dlp when installed. Parallel, rate-limited per host,
retrying what may pass, resumable: a file reaches its final name only once complete."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import random
import shutil
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tqdm import tqdm

from slr.data.manifest import Manifest, status_table, write_missing
from slr.data.wlasl import INDEX_FILE, SPLITS, load_index, read_subset

log = logging.getLogger(__name__)

RAW_DIR = "raw"
MANIFEST_FILE = "download.csv"
COLUMNS = (
    *("video_id", "gloss", "label", "split", "source", "url", "status", "reason", "bytes"),
    "file",  # the raw file under ROOT/raw/ (several videos may share one)
)

# Statuses. A rerun fetches again everything but ok (file present) and, unless told to recheck,
# the permanent failures dead and not_video.
OK = "ok"
DEAD = "dead"  # 404/410, a removed or private YouTube video
HTTP_ERROR = "http_error"  # other 4xx; 429/5xx once retries run out
NOT_VIDEO = "not_video"  # an HTML page, an empty or unrecognised body
ERROR = "error"  # timeouts, dropped connections, unresolvable hosts, SSL
SKIPPED = "skipped"  # not tried: no yt-dlp, youtube=false, offline stop
PERMANENT = (DEAD, NOT_VIDEO)

YTDLP_HOSTS = ("youtube.com", "youtu.be", "vimeo.com", "dailymotion.com")
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) slr-wlasl-download"
# aslpro.com serves its .swf files only with this Referer (as in the official WLASL downloader)
REFERERS = {"www.aslpro.com": "http://www.aslpro.com/cgi-bin/aslpro/aslpro.cgi"}
YTDLP_NOTE = "yt-dlp not installed: pip install -e '.[download]' (or pip install yt-dlp)"


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
        return _matches(self.host, YTDLP_HOSTS)


@dataclass
class Result:
    status: str
    reason: str = ""
    file: str = ""  # name under raw/
    bytes: int = 0


class Retryable(Exception):
    """A failure that may pass: timeout, 429, 5xx, a dropped connection."""

    def __init__(self, reason: str, wait: float | None = None, status: str = "error") -> None:
        super().__init__(reason)
        self.reason, self.wait, self.status = reason, wait, status


def _matches(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def source_key(url: str, first_video_id: str) -> str:
    """The raw file's stem: `yt_<id>` for YouTube (shared by the signs cut from it), the first
    video_id using the url otherwise (so names match the official kit's raw_videos/)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    yt_id = None
    if _matches(host, ("youtu.be",)):
        yt_id = parsed.path.strip("/").split("/")[0]
    elif _matches(host, ("youtube.com",)):
        yt_id = (parse_qs(parsed.query).get("v") or [None])[0]
    if yt_id and all(c.isalnum() or c in "-_" for c in yt_id):
        return f"yt_{yt_id}"
    if _matches(host, YTDLP_HOSTS):
        return "url_" + hashlib.sha1(url.encode()).hexdigest()[:12]
    return first_video_id


def group_sources(entries: list[dict]) -> dict[str, Source]:
    """url -> Source over the whole index, so raw names do not depend on the subset chosen."""
    sources: dict[str, Source] = {}
    for entry in entries:
        for raw in entry["instances"]:
            url, video_id = str(raw["url"]).strip(), str(raw["video_id"])
            if url not in sources:
                sources[url] = Source(url, source_key(url, video_id))
            sources[url].video_ids.append(video_id)
    return sources


class HostLimiter:
    """At most `rate` request starts per second to any one host (threads wait their turn)."""

    def __init__(self, rate: float, clock=time.monotonic, sleep=time.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next: dict[str, float] = {}
        self.lock = threading.Lock()
        self.clock, self.sleep = clock, sleep

    def wait(self, host: str) -> None:
        with self.lock:  # reserve the host's next slot, then sleep outside the lock
            now = self.clock()
            slot = max(now, self.next.get(host, now))
            self.next[host] = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


# ---------------------------------------------------------------------------------------------
# What came back: sniff the first bytes, since dead sites answer 200 with an HTML page.

_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def sniff(head: bytes, content_type: str, url: str) -> tuple[str | None, str]:
    """(extension, "") for something that looks like a video, (None, why not) otherwise."""
    url_ext = os.path.splitext(urlparse(url).path)[1].lower()
    if len(head) >= 8 and head[4:8] in _MP4_BOXES:
        return (url_ext if url_ext in (".mov", ".m4v", ".3gp") else ".mp4"), ""
    magic = {
        b"FWS": ".swf",
        b"CWS": ".swf",
        b"ZWS": ".swf",
        b"FLV": ".flv",
        b"\x1aE\xdf\xa3": ".webm",
        b"\x00\x00\x01\xba": ".mpg",
        b"\x00\x00\x01\xb3": ".mpg",
        b"OggS": ".ogv",
    }
    for prefix, ext in magic.items():
        if head.startswith(prefix):
            return ext, ""
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return ".avi", ""
    if not head:
        return None, "empty response"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()  # a BOM or blank lines may come first
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"[")):
        return None, f"a web page, not a video ({content_type or 'no content type'})"
    if content_type.startswith("video/") or content_type == "application/octet-stream":
        return (url_ext or ".bin"), ""  # an unknown container; slr.prepare's probe decides
    return None, f"unrecognised content ({content_type or 'no content type'})"


# ---------------------------------------------------------------------------------------------
# Plain HTTP(S)


def _http_once(url: str, part: Path, timeout: float) -> tuple[str | None, str, int]:
    """One GET into `part`: (extension or None, reason, bytes). Raises Retryable or Result."""
    headers = {"User-Agent": USER_AGENT}
    referer = REFERERS.get(urlparse(url).hostname or "")
    if referer:
        headers["Referer"] = referer
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content_type = response.headers.get_content_type() or ""
            expected = response.headers.get("Content-Length")
            size, head = 0, b""
            with part.open("wb") as f:
                while chunk := response.read(1 << 16):
                    if len(head) < 64:
                        head += chunk[:64]
                    f.write(chunk)
                    size += len(chunk)
            if expected is not None and expected.isdigit() and size != int(expected):
                raise Retryable(f"incomplete: {size} of {expected} bytes")
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code} {e.reason}"
        if e.code in (404, 410):
            raise _Final(Result(DEAD, reason)) from None
        if e.code == 429 or e.code >= 500:
            wait = _retry_after(e.headers.get("Retry-After"))
            raise Retryable(reason, wait, HTTP_ERROR) from None
        raise _Final(Result(HTTP_ERROR, reason)) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, socket.gaierror):
            # not "dead": an offline machine says the same of every host
            raise _Final(Result(ERROR, f"cannot resolve host: {e.reason}")) from None
        if isinstance(e.reason, ssl.SSLError):
            raise _Final(Result(ERROR, f"SSL: {e.reason}")) from None
        if isinstance(e.reason, TimeoutError | socket.timeout):
            raise Retryable(f"timed out after {timeout:g} s") from None
        raise Retryable(f"connection failed: {e.reason}") from None
    except TimeoutError:
        raise Retryable(f"timed out after {timeout:g} s") from None
    except (http.client.HTTPException, ConnectionError) as e:
        raise Retryable(f"connection failed: {type(e).__name__} {e}") from None
    ext, why = sniff(head, content_type, url)
    return ext, why, size


class _Final(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.reason)
        self.result = result


def _retry_after(value: str | None) -> float | None:
    return float(value) if value and value.strip().isdigit() else None


def fetch_http(
    url: str,
    raw_dir: Path,
    key: str,
    timeout: float,
    retries: int,
    backoff: float,
    max_backoff: float,
    limiter: HostLimiter,
) -> Result:
    """GET `url` into raw_dir/<key><ext>, retrying what may pass with exponential backoff."""
    part = raw_dir / f".{key}.part"
    host = urlparse(url).hostname or ""
    try:
        for attempt in range(retries + 1):
            limiter.wait(host)
            try:
                ext, why, size = _http_once(url, part, timeout)
            except Retryable as e:
                if attempt == retries:
                    return Result(e.status, f"{e.reason} ({attempt + 1} attempts)")
                wait = e.wait if e.wait is not None else backoff * 2**attempt
                time.sleep(min(max_backoff, wait) * random.uniform(0.8, 1.2))
                continue
            except _Final as e:
                return e.result
            if ext is None:
                return Result(NOT_VIDEO, why, bytes=size)
            final = raw_dir / f"{key}{ext}"
            os.replace(part, final)
            return Result(OK, file=final.name, bytes=size)
        raise AssertionError("unreachable")
    finally:
        part.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# yt-dlp


def ytdlp_available() -> bool:
    try:
        import yt_dlp  # noqa: F401
    except ImportError:
        return False
    return True


class _QuietLogger:
    """yt-dlp's messages go to our log at debug level; errors come back as exceptions."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = warning = debug

    def error(self, msg: str) -> None:
        log.debug("yt-dlp error: %s", msg)


_YTDLP_DEAD = (
    "video unavailable",
    "private video",
    "has been removed",
    "account associated with this video has been terminated",
    "http error 404",
    "http error 410",
)


def fetch_ytdlp(
    url: str, raw_dir: Path, key: str, timeout: float, retries: int, fmt: str
) -> Result:
    """Download with yt-dlp into a private temporary folder, then move the one file into
    raw_dir/<key><ext>. Video only: no audio track, so no merging and no ffmpeg needed."""
    import yt_dlp

    work = raw_dir / f".{key}.ytdlp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    options = {
        "format": fmt,
        "outtmpl": str(work / f"{key}.%(ext)s"),
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "socket_timeout": timeout,
        "retries": retries,
        "fragment_retries": retries,
        "logger": _QuietLogger(),
        "http_headers": {"User-Agent": USER_AGENT},
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.download([url])
        files = [p for p in work.iterdir() if not p.name.endswith((".part", ".ytdl"))]
        if len(files) != 1:
            return Result(ERROR, f"yt-dlp left {len(files)} files, expected 1")
        final = raw_dir / f"{key}{files[0].suffix or '.mp4'}"
        size = files[0].stat().st_size
        os.replace(files[0], final)
        return Result(OK, file=final.name, bytes=size)
    except yt_dlp.utils.DownloadError as e:
        message = str(e).removeprefix("ERROR: ")
        lower = message.lower()
        if any(s in lower for s in _YTDLP_DEAD):
            return Result(DEAD, f"yt-dlp: {message}")
        if "http error" in lower:
            return Result(HTTP_ERROR, f"yt-dlp: {message}")
        return Result(ERROR, f"yt-dlp: {message}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The run


def _existing(raw_dir: Path) -> dict[str, Path]:
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
    index_path = root / INDEX_FILE
    entries = load_index(index_path)
    if split_file is not None and not Path(split_file).is_absolute():
        split_file = root / split_file
    scope = read_subset(index_path, subset, split_file)
    meta = {
        str(raw["video_id"]): {"url": str(raw["url"]).strip(), "source": raw.get("source", "")}
        for entry in entries
        for raw in entry["instances"]
    }
    instances = {i.video_id: i for split in SPLITS for i in scope.splits[split]}
    sources = group_sources(entries)
    raw_dir = root / RAW_DIR
    raw_dir.mkdir(parents=True, exist_ok=True)
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

    existing = _existing(raw_dir)
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

    def fetch(src: Source) -> Result:
        try:
            if src.via_ytdlp:
                limiter.wait(src.host)
                return fetch_ytdlp(src.url, raw_dir, src.key, timeout, retries, ytdlp_format)
            return fetch_http(
                src.url, raw_dir, src.key, timeout, retries, backoff, max_backoff, limiter
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
        unsettled = _run(todo, fetch, workers, progress, record)
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
) -> list[Source]:
    """Fetch in a thread pool; record each result as it lands (here, in one thread). `done`
    returning True stops the run: what is in flight finishes and is recorded, the rest is
    returned unfetched."""
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
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return list(pending.values())
