"""Serving the review page on loopback, for browsers that restrict ``file://``.

Why so little: the page needs no server, so this one serves that one file only, read
afresh on each request, on 127.0.0.1 only, and refuses other Host names (DNS rebinding).
"""

from __future__ import annotations

import http.server
import sys
import threading
from pathlib import Path
from typing import Any

from forumtranslate.errors import ForumTranslateError

DEFAULT_PORT = 8765


class ReviewServer(http.server.ThreadingHTTPServer):
    """Serves one file, on 127.0.0.1 only: the review page, read afresh on each request."""

    daemon_threads = True

    def __init__(self, page: Path, port: int = DEFAULT_PORT):
        self.page = Path(page)
        try:
            super().__init__(("127.0.0.1", port), _ReviewHandler)
        except OSError as err:
            raise ForumTranslateError(
                f"cannot listen on 127.0.0.1:{port}: {err.strerror}; pick another --port "
                "(0 picks a free one)"
            ) from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{self.page.name}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request (a closed tab, a reload) is no error; anything
        else is one line on stderr, not the standard library's traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        print(
            f"forumtranslate: warning: request from {client_address[0]} failed: "
            f"{type(error).__name__}: {error}",
            file=sys.stderr,
        )


class _ReviewHandler(http.server.BaseHTTPRequestHandler):
    server: ReviewServer

    def do_GET(self) -> None:
        self._send(body=True)

    def do_HEAD(self) -> None:
        self._send(body=False)

    def _send(self, body: bool) -> None:
        host = self.headers.get("Host", "").rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):  # refuse DNS-rebinding pages
            self.send_error(403, "only http://127.0.0.1 serves this page")
            return
        if self.path.split("?", 1)[0] not in ("/", f"/{self.server.page.name}"):
            self.send_error(404)
            return
        try:
            data = self.server.page.read_bytes()
        except OSError:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints the URL
        return


def serve_in_background(server: ReviewServer) -> threading.Thread:
    """Run ``server`` on a daemon thread (for tests and embedding); stop with shutdown()."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread
