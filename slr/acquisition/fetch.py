"""Fetch one url into a folder: plain HTTP(S) with the standard library (retries with backoff,
a per-host rate limit, the body sniffed for what it really is), or yt-dlp for video sites. A file
gets its final name only once complete."""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

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
INTERRUPTED = "interrupted (Ctrl-C)"
YTDLP_NOTE = "yt-dlp not installed: pip install -e '.[download]' (or pip install yt-dlp)"


@dataclass
class Result:
    status: str
    reason: str = ""
    file: str = ""  # name under raw/
    bytes: int = 0


class Retryable(Exception):
    """A failure that may pass: timeout, 429, 5xx, a dropped connection."""

    def __init__(self, reason: str, wait: float | None = None, status: str = ERROR) -> None:
        super().__init__(reason)
        self.reason, self.wait, self.status = reason, wait, status


def matches_host(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


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


class _Final(Exception):
    """A result that trying again will not change (404, 403, an unresolvable host)."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.reason)
        self.result = result


def _http_once(
    url: str, part: Path, timeout: float, stop: threading.Event
) -> tuple[str | None, str, int]:
    """One GET into `part`: (extension or None, why not a video, bytes). Raises Retryable or
    _Final; gives up between two blocks once `stop` is set."""
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
                    if stop.is_set():
                        raise _Final(Result(SKIPPED, INTERRUPTED))
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
    stop: threading.Event | None = None,
) -> Result:
    """GET `url` into raw_dir/<key><ext>, retrying what may pass with exponential backoff.
    Setting `stop` (Ctrl-C) ends the attempt under way and skips the retries."""
    stop = stop or threading.Event()
    part = raw_dir / f".{key}.part"
    host = urlparse(url).hostname or ""
    try:
        for attempt in range(retries + 1):
            limiter.wait(host)
            if stop.is_set():
                return Result(SKIPPED, INTERRUPTED)
            try:
                ext, why, size = _http_once(url, part, timeout, stop)
            except Retryable as e:
                if attempt == retries:
                    return Result(e.status, f"{e.reason} ({attempt + 1} attempts)")
                wait = e.wait if e.wait is not None else backoff * 2**attempt
                stop.wait(min(max_backoff, wait) * random.uniform(0.8, 1.2))
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
