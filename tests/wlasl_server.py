"""A local HTTP server on 127.0.0.1 that behaves like the web WLASL points at: real clips, dead
links, a truncated file, an HTML page under a video's name, a 429 before success, a response
slower than any timeout, a 500, a connection dropped mid-body, and a download that stalls
half-way (to kill a run mid-file)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Page not found</h1></body></html>\n" * 20


class WLASLServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, clips: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.clips = clips
        self.hits: dict[str, int] = {}
        self.slow_delay = 1.0  # seconds before /slow answers: above the tests' timeout
        self.stall = threading.Event()  # set: /stall.mp4 sends half and waits for `release`
        self.release = threading.Event()
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def hit(self, path: str) -> int:
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            return self.hits[path]


class _Handler(BaseHTTPRequestHandler):
    server: WLASLServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, body: bytes, ctype: str = "video/mp4", **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _clip(self, video_id: str) -> bytes:
        return (self.server.clips / f"{video_id}.mp4").read_bytes()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        count = self.server.hit(path)
        name = path.rsplit("/", 1)[-1]
        if path.startswith("/clips/") and (self.server.clips / name).is_file():
            self._send(200, (self.server.clips / name).read_bytes())
        elif path.startswith("/truncated/"):  # a broken file on the server: complete transfer
            data = self._clip(name.removesuffix(".mp4"))
            self._send(200, data[: len(data) // 3])
        elif path.startswith("/cut/"):  # the connection drops half-way through the body
            data = self._clip(name.removesuffix(".mp4"))
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
        elif path == "/html.mp4":
            self._send(200, HTML_PAGE, "text/html")
        elif path == "/html-as-video.mp4":  # the content type lies too
            self._send(200, HTML_PAGE, "video/mp4")
        elif path.startswith("/flaky429/"):  # every other request: 429 first, then the clip
            if count % 2:
                self._send(429, b"slow down", "text/plain", Retry_After="0")
            else:
                self._send(200, self._clip(name.removesuffix(".mp4")))
        elif path == "/slow.mp4":
            time.sleep(self.server.slow_delay)
            self._send(200, self._clip("07074"))
        elif path == "/error500.mp4":
            self._send(500, b"internal error", "text/plain")
        elif path == "/forbidden.mp4":
            self._send(403, b"forbidden", "text/plain")
        elif path.startswith("/stall/"):
            data = self._clip(name.removesuffix(".mp4"))
            if not self.server.stall.is_set():
                self._send(200, data)
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.server.release.wait(30)
        else:
            self._send(404, b"not found", "text/plain")


def start_server(clips: Path) -> WLASLServer:
    server = WLASLServer(clips)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_index(path: Path, glosses: dict[str, list[dict]]) -> Path:
    """A WLASL_v0.3.json-format index: {gloss: [instance, ...]} in label order."""
    entries = []
    for gloss, instances in glosses.items():
        full = [
            {
                "bbox": [0, 0, 100, 100],
                "fps": 25,
                "frame_start": 1,
                "frame_end": -1,
                "instance_id": k,
                "signer_id": 0,
                "source": "test",
                "split": "train",
                "variation_id": 0,
                **inst,
            }
            for k, inst in enumerate(instances)
        ]
        entries.append({"gloss": gloss, "instances": full})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries))
    return path
