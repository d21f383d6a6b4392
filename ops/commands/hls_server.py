"""The development HLS edge: serves ``R2_VIDEO_BUCKET``'s ``hls/`` prefix over HTTP on
127.0.0.1, through the same token verification a production CDN worker runs.

    python -m ops.commands.hls_server [--port 8089] [--static DIR]

* ``/hls/<tenant>/<video>/...`` -> object ``hls/<tenant>/<video>/...``: 403 unless the
  request carries a valid, unexpired token whose prefix covers the path
  (``pipelines.video.signing.verify``); playlists and WebVTT files are served with the
  token appended to every relative URI, so a player's variant and segment requests carry
  it too.
* ``/static/...`` (with ``--static``): plain files from DIR, unauthenticated (the
  playback check's page and hls.js).

``just dev`` starts it and points ``CDN_HLS_BASE_URL`` at it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from botocore.exceptions import ClientError

from ops import storage
from ops.settings import get_settings
from pipelines.video.signing import propagate_token, verify

log = logging.getLogger("ops.commands.hls_server")

MOUNT = "/hls/"
STATIC = "/static/"
TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".vtt": "text/vtt",
    ".jpg": "image/jpeg",
}


def _handler(static_dir: Path | None) -> type[BaseHTTPRequestHandler]:
    settings = get_settings()
    keys = {settings.cdn_hls_signing_key_id: settings.cdn_hls_signing_secret}

    class Handler(BaseHTTPRequestHandler):
        server_version = "academy-hls"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header(
                "Cache-Control", "no-store" if status != 200 else "private, max-age=60"
            )
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Range")
            self.end_headers()

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            if static_dir is not None and path.startswith(STATIC):
                self._static(static_dir, path[len(STATIC) :])
                return
            if not path.startswith(MOUNT):
                self._send(404, b"not found")
                return
            query = dict(parse_qsl(parts.query))
            refusal = verify(path, query, keys=keys)
            if refusal is not None:
                log.info("hls request refused", extra={"path": path, "reason": refusal})
                self._send(403, f"forbidden: {refusal}".encode())
                return
            key = storage.object_key("hls", path[len(MOUNT) :])
            try:
                body = storage.get_bytes(settings.r2_video_bucket, key)
            except ClientError:
                self._send(404, b"not found")
                return
            suffix = Path(path).suffix
            if suffix in (".m3u8", ".vtt"):
                body = propagate_token(body.decode(), query).encode()
            self._send(200, body, TYPES.get(suffix, "application/octet-stream"))

        def _static(self, root: Path, rel: str) -> None:
            target = (root / rel).resolve()
            if not target.is_relative_to(root.resolve()) or not target.is_file():
                self._send(404, b"not found")
                return
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self._send(200, target.read_bytes(), ctype)

    return Handler


def make_server(port: int = 0, static_dir: Path | None = None) -> ThreadingHTTPServer:
    """A server on 127.0.0.1 (``port`` 0: any free port); call ``serve_forever``."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(static_dir))
    server.daemon_threads = True
    return server


def serve_in_thread(port: int = 0, static_dir: Path | None = None) -> ThreadingHTTPServer:
    server = make_server(port, static_dir)
    threading.Thread(target=server.serve_forever, name="hls-server", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--static", type=Path, default=None)
    args = parser.parse_args()
    server = make_server(args.port, args.static)
    print(f"HLS edge on http://127.0.0.1:{server.server_address[1]}{MOUNT}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
