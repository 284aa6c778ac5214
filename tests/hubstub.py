"""A stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, for tests that download.

No hub is reachable from CI, yet the code that resolves and downloads models must be
tested for real: ``huggingface_hub`` honours ``HF_ENDPOINT`` (and ``endpoint=``), so the
tests point it here. The stand-in answers the requests that ``snapshot_download``,
``HfApi.model_info`` and ``HfApi.get_repo_discussions`` make, shaped as the Hub answers
them (only the fields and headers those functions read):

* ``GET /api/models/{id}[/revision/{rev}]`` — the model's info: ``sha`` (the commit) and
  ``siblings``, with sizes, blob ids and LFS sha256 when asked for ``blobs``;
* ``GET /api/models/{id}/tree/{rev}`` — the file listing (``oid``, ``size``, ``lfs``);
* ``GET /api/models/{id}/discussions`` — discussions and pull requests, 50 a page, with the
  ``type``, ``status`` and ``author`` filters;
* ``HEAD``/``GET /{id}/resolve/{rev}/{file}`` — a file, with ``X-Repo-Commit``, ``ETag``,
  ``X-Linked-Etag``/``X-Linked-Size`` for LFS files and ``Range`` requests (206).

The real Hub answers an LFS file's HEAD with a redirect to a CDN on another host; here the
bytes come from the same address (a redirect to the same host would be followed by the
HEAD request and lose the headers), with the headers the redirect would carry.

Errors carry ``X-Error-Code`` as on the Hub (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``). ``drops`` makes the server cut a file's download after some bytes, to
test resuming. The server runs in a thread and stops when the ``with`` block ends.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".bin", ".safetensors", ".h5", ".model", ".msgpack", ".ot")
PAGE_SIZE = 50
DATE = "2024-03-01T12:00:00.000Z"


@dataclass
class PullRequest:
    """A pull request: ``files`` added to (or replacing) those of ``base``, the main it was
    branched from (default: main as it is now)."""

    num: int
    author: str
    title: str
    files: dict[str, bytes]
    status: str = "open"
    base: dict[str, bytes] | None = None


@dataclass
class StubRepo:
    repo_id: str
    main: dict[str, bytes]
    pulls: list[PullRequest] = field(default_factory=list)
    discussions: bool = True  # False: turned off by the owner (403, as on the Hub)

    def refs(self) -> dict[str, dict[str, bytes]]:
        """Branch and pull-request refs and their files."""
        refs = {"main": dict(self.main)}
        for pull in self.pulls:
            base = self.main if pull.base is None else pull.base
            refs[f"refs/pr/{pull.num}"] = {**base, **pull.files}
        return refs


def split_model_folder(folder: Path) -> tuple[dict[str, bytes], bytes]:
    """A model folder as an old Hub repository holds it: ``main`` with pickled weights
    (``pytorch_model.bin``, made here and only ever served) instead of safetensors, plus a
    README and .gitattributes; and the safetensors file, for a conversion pull request."""
    import io

    import torch
    from safetensors.torch import load_file

    safetensors = (folder / "model.safetensors").read_bytes()
    pickled = io.BytesIO()
    torch.save(load_file(folder / "model.safetensors"), pickled)
    main = {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.is_file() and p.name != "model.safetensors"
    }
    main["pytorch_model.bin"] = pickled.getvalue()
    main["README.md"] = b"# a tiny random-weight model served by the tests' stand-in hub\n"
    main[".gitattributes"] = b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    return main, safetensors


def commit_of(files: dict[str, bytes]) -> str:
    """A 40-hex commit id that changes whenever a file does."""
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(content: bytes) -> bytes:
    """The text git stores in place of an LFS file."""
    sha = hashlib.sha256(content).hexdigest()
    spec = "version https://git-lfs.github.com/spec/v1"
    return f"{spec}\noid sha256:{sha}\nsize {len(content)}\n".encode()


def file_entry(name: str, content: bytes) -> dict[str, Any]:
    """size, git blob id and LFS info of one file, as the Hub lists them."""
    if not name.endswith(LFS_SUFFIXES):
        return {"size": len(content), "oid": git_blob_id(content), "lfs": None}
    pointer = lfs_pointer(content)
    return {
        "size": len(content),
        "oid": git_blob_id(pointer),
        "lfs": {
            "oid": hashlib.sha256(content).hexdigest(),
            "size": len(content),
            "pointerSize": len(pointer),
        },
    }


class StubHub:
    """``with StubHub([repo, ...]) as hub:`` serves the repos at ``hub.url``."""

    def __init__(self, repos: list[StubRepo]):
        self.repos = {repo.repo_id: repo for repo in repos}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range)
        self.drops: dict[str, list[int]] = {}  # file -> bytes to send before each cut
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StubHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def commit(self, repo_id: str, ref: str) -> str:
        return commit_of(self.repos[repo_id].refs()[ref])

    def fetched(self, file_name: str) -> list[tuple[str, str, str | None]]:
        """The GET requests for ``file_name`` at any revision."""
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith("/" + file_name)]

    # --- lookups used by the handler ---

    def files_at(self, repo: StubRepo, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """(commit, files) of a branch, pull request ref or commit id."""
        for ref, files in repo.refs().items():
            commit = commit_of(files)
            if revision in (ref, commit):
                return commit, files
        return None


def _handler_for(hub: StubHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's client expects
        timeout = 10  # a client that stops talking frees its thread

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_GET(self) -> None:
            self._route("GET")

        def _route(self, method: str) -> None:
            split = urlsplit(self.path)
            with hub.lock:
                hub.requests.append((method, split.path, self.headers.get("Range")))
            parts = [unquote(p) for p in split.path.split("/")[1:]]
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                self._api(parts[2] + "/" + parts[3], parts[4:], query)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve(method, parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]))
            else:
                self._error(404, "RepoNotFound", "not a route of this stand-in")

        def _repo(self, repo_id: str) -> StubRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return repo

        def _api(self, repo_id: str, rest: list[str], query: dict[str, str]) -> None:
            repo = self._repo(repo_id)
            if repo is None:
                return
            if rest[:1] == ["discussions"]:
                if not repo.discussions:
                    self._error(
                        403, "DiscussionsDisabled", "Discussions are disabled for this repo"
                    )
                    return
                self._discussions(repo, query)
                return
            if not rest or rest[0] in ("revision", "tree"):
                revision = rest[1] if len(rest) > 1 else "main"
                found = hub.files_at(repo, revision)
                if found is None:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                    return
                commit, files = found
                if rest[:1] == ["tree"]:
                    listing = [
                        {"type": "file", "path": name, **file_entry(name, content)}
                        for name, content in sorted(files.items())
                    ]
                    self._json([{k: v for k, v in e.items() if v is not None} for e in listing])
                    return
                self._json(
                    self._model_info(repo, commit, files, query.get("blobs", "").lower() == "true")
                )
                return
            self._error(404, "RepoNotFound", "unknown api route")

        def _model_info(
            self, repo: StubRepo, commit: str, files: dict[str, bytes], blobs: bool
        ) -> dict[str, Any]:
            siblings = []
            for name, content in sorted(files.items()):
                sibling: dict[str, Any] = {"rfilename": name}
                if blobs:
                    entry = file_entry(name, content)
                    sibling.update(size=entry["size"], blobId=entry["oid"])
                    if entry["lfs"]:
                        lfs = entry["lfs"]
                        sibling["lfs"] = {
                            "size": lfs["size"],
                            "sha256": lfs["oid"],
                            "pointerSize": lfs["pointerSize"],
                        }
                siblings.append(sibling)
            return {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit,
                "lastModified": DATE,
                "createdAt": DATE,
                "private": False,
                "disabled": False,
                "gated": False,
                "library_name": "transformers",
                "pipeline_tag": "translation",
                "tags": ["transformers", "translation"],
                "siblings": siblings,
            }

        def _discussions(self, repo: StubRepo, query: dict[str, str]) -> None:
            pulls = [
                p
                for p in repo.pulls
                if query.get("type") in (None, "all", "pull_request")
                and query.get("status") in (None, "all", p.status)
                and query.get("author") in (None, p.author)
            ]
            pulls.sort(key=lambda p: -p.num)  # newest first, as the Hub lists them
            start = int(query.get("p", "0")) * PAGE_SIZE
            page = pulls[start : start + PAGE_SIZE]
            self._json(
                {
                    "discussions": [
                        {
                            "num": p.num,
                            "title": p.title,
                            "status": p.status,
                            "isPullRequest": True,
                            "createdAt": DATE,
                            "numComments": 1,
                            "pinned": False,
                            "author": {"name": p.author, "type": "user"},
                            "repo": {"name": repo.repo_id, "type": "model"},
                        }
                        for p in page
                    ],
                    "count": len(pulls),
                    "start": start,
                    "numClosedDiscussions": 0,
                }
            )

        def _resolve(self, method: str, repo_id: str, revision: str, name: str) -> None:
            repo = self._repo(repo_id)
            if repo is None:
                return
            found = hub.files_at(repo, revision)
            if found is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return
            commit, files = found
            if name not in files:
                self._error(404, "EntryNotFound", f"{name} does not exist", commit)
                return
            content = files[name]
            entry = file_entry(name, content)
            start = 0
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes=") and wanted[6:].split("-")[0].isdigit():
                start = min(int(wanted[6:].split("-")[0]), len(content))
            body = content[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("X-Repo-Commit", commit)
            if entry["lfs"]:
                sha256 = entry["lfs"]["oid"]
                self.send_header("ETag", f'"{sha256}"')
                self.send_header("X-Linked-Etag", f'"{sha256}"')
                self.send_header("X-Linked-Size", str(len(content)))
            else:
                self.send_header("ETag", f'"{entry["oid"]}"')
            if start:
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}"
                )
            self.end_headers()
            if method == "HEAD":
                return
            with hub.lock:
                cuts = hub.drops.get(name)
                cut = cuts.pop(0) if cuts else None
            if cut is None or cut >= len(body):
                self.wfile.write(body)
                return
            self.wfile.write(body[:cut])  # then hang up in the middle of the file
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        def _json(self, value: Any) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler
