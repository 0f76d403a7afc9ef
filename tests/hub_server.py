"""A local, in-memory Hugging Face Hub for tests.

`LocalHub` speaks enough of the real Hub HTTP protocol that the *real* `huggingface_hub` client
(2.x, with `HF_HUB_DISABLE_XET=1`) and `datasets` can create repos, upload (regular + git-LFS
"basic"/"multipart" transfers), list, and download against it, including the cache logic of
`hf_hub_download` / `snapshot_download` (commit shas, ETags, `X-Repo-Commit`, redirects).

Design notes (the parts of the protocol that are easy to get wrong):

* Two listeners on 127.0.0.1: the **Hub** (`endpoint`) and a fake **CDN / object store**
  (`cdn_endpoint`). LFS uploads are PUT to signed CDN URLs and LFS downloads are `302`-redirected to
  the CDN, as on huggingface.co. The client treats a redirect to *another origin* specially: a
  HEAD stops at the 302 and reads `X-Linked-Etag`/`X-Linked-Size` from it, and the GET follows it
  *without* the Authorization header. A same-origin redirect would be followed by the HEAD and the
  metadata headers would be lost, hence the second port.
* Commits are real git-style snapshots: blob/tree/commit ids are computed exactly like git does
  (`sha1("blob <len>\\0" + content)` etc.), so every commit id is a 40-hex sha, revisions can be
  a branch, a tag, `refs/pr/N` or a commit sha, and regular-file ETags are git blob shas. LFS files
  are stored as pointer files in the tree (tree `oid` = blob sha of the pointer) and their ETag is
  the sha256 of the content.
* The client URL-quotes revisions with `safe=""` (`refs/pr/1` -> `refs%2Fpr%2F1`) and tree paths
  the same way, so routing splits the *raw* path on "/" before unquoting each segment.
* Error responses carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) and a
  JSON `{"error": ...}` body: `huggingface_hub.utils.hf_raise_for_status` maps them to
  `RepositoryNotFoundError`, `RevisionNotFoundError`, `RemoteEntryNotFoundError`.
* Xet storage is not implemented: clients must run with `HF_HUB_DISABLE_XET=1` (uploads would
  otherwise go to Xet; the Xet token endpoints answer 501 with an explicit message). Downloads never
  use Xet because the server never sends `X-Xet-Hash`.

Only the standard library is used. Everything lives in memory; the server threads are daemons and
`stop()` shuts both listeners down.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import mimetypes
import re
import secrets
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

REPO_TYPES = ("model", "dataset", "space")
_PLURAL_TO_TYPE = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# The Hub refuses non-LFS files above 10 MB and binary files outside LFS.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

_COMMON_LFS_PATTERNS = [
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
    "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
    "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
]  # fmt: skip
_DATASET_LFS_PATTERNS = [
    "*.lz4", "*.mds", "*.wav", "*.mp3", "*.flac", "*.ogg", "*.aac", "*.bmp", "*.gif", "*.png",
    "*.tiff", "*.jpg", "*.jpeg", "*.webp", "*.mp4", "*.webm",
]  # fmt: skip


def default_gitattributes(repo_type: str) -> bytes:
    """The `.gitattributes` of the initial commit (same spirit as the one huggingface.co creates)."""
    patterns = _COMMON_LFS_PATTERNS + (_DATASET_LFS_PATTERNS if repo_type == "dataset" else [])
    return "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in patterns).encode()


# ----------------------------------------------------------------------------------------------
# git object model
# ----------------------------------------------------------------------------------------------


def git_hash(kind: str, body: bytes) -> str:
    """Git object id: sha1 of `<kind> <len>\\0<body>` (kind = blob / tree / commit)."""
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file committed in place of an LFS file's content."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class _Entry:
    """A file in a commit snapshot. For LFS files `data` is the real content (shared with the store)."""

    data: bytes
    lfs_sha256: str | None = None
    git_oid: str = ""  # blob id of the content, or of the pointer file for LFS files

    @staticmethod
    def regular(data: bytes) -> _Entry:
        return _Entry(data=data, git_oid=git_hash("blob", data))

    @staticmethod
    def lfs(data: bytes, sha256: str) -> _Entry:
        return _Entry(data=data, lfs_sha256=sha256, git_oid=git_hash("blob", lfs_pointer(sha256, len(data))))

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.lfs_sha256 or "", self.size)) if self.lfs_sha256 else 0

    @property
    def etag(self) -> str:
        """What the Hub puts in the (X-Linked-)ETag: sha256 for LFS files, git blob id otherwise."""
        return self.lfs_sha256 or self.git_oid


def _tree_oids(files: Mapping[str, _Entry]) -> dict[str, str]:
    """Git tree ids of every directory ("" = root), computed bottom-up like `git write-tree`."""
    children: dict[str, dict[str, tuple[bool, str]]] = {"": {}}
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            children.setdefault("/".join(parts[:depth]), {})
    for path, entry in files.items():
        parent, _, name = path.rpartition("/")
        children[parent][name] = (False, entry.git_oid)
    oids: dict[str, str] = {}
    for directory in sorted(children, key=lambda d: -d.count("/") - (1 if d else 0)):
        # git sorts tree entries by name, comparing directories as if they ended with "/"
        items = sorted(children[directory].items(), key=lambda kv: kv[0] + ("/" if kv[1][0] else ""))
        body = b"".join(
            (b"40000 " if is_dir else b"100644 ") + name.encode() + b"\0" + bytes.fromhex(oid)
            for name, (is_dir, oid) in items
        )
        oids[directory] = git_hash("tree", body)
        if directory:
            parent, _, name = directory.rpartition("/")
            children[parent][name] = (True, oids[directory])
    return oids


@dataclass
class _Commit:
    oid: str
    files: dict[str, _Entry]
    dir_oids: dict[str, str]
    parents: list[str]
    title: str
    message: str
    author: str
    timestamp: int

    @property
    def date(self) -> str:
        return _iso(self.timestamp)


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: float
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)  # number -> head commit oid
    sdk: str | None = None  # spaces only

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, revision: str) -> _Commit | None:
        """Branch, tag, refs/heads|tags|pr/..., full or (>=7 chars) abbreviated commit sha."""
        rev = revision
        if rev.startswith("refs/heads/"):
            rev = rev[len("refs/heads/") :]
        elif rev.startswith("refs/tags/"):
            oid = self.tags.get(rev[len("refs/tags/") :])
            return self.commits.get(oid) if oid else None
        m = re.fullmatch(r"refs/pr/(\d+)", rev)
        if m:
            oid = self.pull_requests.get(int(m.group(1)))
            return self.commits.get(oid) if oid else None
        if rev in self.branches:
            return self.commits[self.branches[rev]]
        if rev in self.tags:
            return self.commits[self.tags[rev]]
        if rev in self.commits:
            return self.commits[rev]
        if re.fullmatch(r"[0-9a-f]{7,39}", rev):
            matches = [c for oid, c in self.commits.items() if oid.startswith(rev)]
            if len(matches) == 1:
                return matches[0]
        return None

    def history(self, head: _Commit) -> list[_Commit]:
        """First-parent history, newest first."""
        out = [head]
        while out[-1].parents:
            out.append(self.commits[out[-1].parents[0]])
        return out

    def last_commit_for(self, head: _Commit, path: str, is_dir: bool) -> _Commit:
        """The most recent commit (first-parent chain) that changed `path` (a file or a directory)."""

        def oid_at(commit: _Commit) -> str | None:
            if is_dir:
                return commit.dir_oids.get(path)
            entry = commit.files.get(path)
            return entry.git_oid if entry else None

        history = self.history(head)
        current = oid_at(head)
        for commit, parent in zip(history, history[1:] + [None]):
            if parent is None or oid_at(parent) != current:
                return commit
        return head  # unreachable


def _iso(timestamp: float) -> str:
    ms = int(round((timestamp % 1) * 1000)) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{ms:03d}Z"


def _match_pattern(pattern: str, path: str) -> bool:
    """gitattributes / gitignore-style matching: no "/" in the pattern -> match the basename."""
    pattern = pattern.strip()
    if pattern.endswith("/"):
        prefix = pattern.strip("/")
        return path == prefix or path.startswith(prefix + "/") or f"/{prefix}/" in f"/{path}"
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern.lstrip("/").replace("**/", "*").replace("/**", "/*"))


def _lfs_patterns(gitattributes: bytes | None) -> list[str]:
    if not gitattributes:
        return []
    patterns = []
    for line in gitattributes.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _is_ignored(gitignore: str | None, path: str) -> bool:
    if not gitignore:
        return False
    ignored = False
    for line in gitignore.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            if _match_pattern(line[1:], path):
                ignored = False
        elif _match_pattern(line, path):
            ignored = True
    return ignored


# ----------------------------------------------------------------------------------------------
# HTTP plumbing
# ----------------------------------------------------------------------------------------------


class HubHTTPError(Exception):
    """Raised by route handlers; turned into a Hub-style JSON error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = dict(headers or {})


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def json(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return Response(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        )


@dataclass
class RequestRecord:
    """One request seen by the server (for assertions in tests)."""

    server: str  # "hub" or "cdn"
    method: str
    path: str  # unquoted path, without the query string
    query: str
    status: int
    user: str | None


@dataclass
class _Failure:
    substring: str
    status: int
    remaining: int | None  # None = forever
    method: str | None
    server: str | None
    message: str


@dataclass
class _Request:
    method: str
    raw_path: str
    segments: list[str]  # raw (still %-quoted) path segments
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    user: str | None
    token_role: str | None  # "write" / "read" / None (anonymous)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as err:
            raise HubHTTPError(400, f"Invalid JSON body: {err}") from err


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single `bytes=` range into inclusive (start, end); None = serve everything."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    start_s, _, end_s = header[len("bytes=") :].strip().partition("-")
    try:
        if start_s == "":  # suffix range: last N bytes
            length = int(end_s)
            if length <= 0:
                raise ValueError
            return max(size - length, 0), size - 1
        start = int(start_s)
        end = int(end_s) if end_s else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        raise HubHTTPError(
            416, "Requested Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"}
        )
    return start, min(end, size - 1)


def _serve_bytes(req: _Request, data: bytes, headers: dict[str, str]) -> Response:
    """Serve file content with Range support (the client resumes downloads / HfFileSystem reads ranges)."""
    headers = {"Accept-Ranges": "bytes", **headers}
    headers.setdefault("Content-Type", "application/octet-stream")
    rng = _parse_range(req.headers.get("Range"), len(data))
    if rng is None:
        return Response(200, data, headers)
    start, end = rng
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(206, data[start : end + 1], headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections
    server_version = "LocalHub/1.0"
    hub: LocalHub  # set on the per-listener subclass
    role: str  # "hub" or "cdn"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        if self.hub.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        split = urlsplit(self.path)
        raw_path = split.path
        req = _Request(
            method=method,
            raw_path=raw_path,
            segments=raw_path.split("/")[1:],
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            user=None,
            token_role=None,
        )
        try:
            response = self.hub._handle(self.role, req)
        except HubHTTPError as err:
            response = self.hub._error_response(err)
        except Exception as err:  # a bug in the fake server: make it loud in the test, not a hang
            self.hub.server_errors.append(traceback.format_exc())
            response = Response.json({"error": f"LocalHub internal error: {err!r}"}, status=500)
        self.hub._record(self.role, req, response.status)
        self.send_response(response.status)
        headers = {"X-Request-Id": f"Root=localhub-{secrets.token_hex(6)}", **response.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if method != "HEAD" and response.body:
            self.wfile.write(response.body)


# ----------------------------------------------------------------------------------------------
# The Hub
# ----------------------------------------------------------------------------------------------


class LocalHub:
    """An in-memory Hugging Face Hub on 127.0.0.1 (see the module docstring).

    Args:
        tokens: token -> user name. `Authorization: Bearer <token>` authenticates as that user.
        read_only_tokens: tokens (also listed in `tokens`) that may read but not write (403 on writes).
        orgs: organisation -> member user names (members may write in the org's namespace).
        tree_page_size: page size of `GET /api/.../tree` (1000 on the Hub, 50 with `expand`); lower it
            to exercise the client's pagination.
        lfs_multipart_chunk_size: if set, LFS uploads are offered as multipart with this part size
            (the Hub's "multipart" transfer); otherwise as a single PUT ("basic").
        port, cdn_port: fixed ports (default: free ones). A fixed Hub port lets in-process clients set
            `HF_ENDPOINT` before importing huggingface_hub, i.e. before the server exists.
        verbose: log every request to stderr.

    Test helpers: `fail_next(...)`, `fail_all_writes`, `requests`, `server_errors`, `unhandled`,
    `list_files(...)`, `read_file(...)`, `file_info(...)`, `commits(...)`, `create_repo(...)`,
    `upload(...)`.
    """

    def __init__(
        self,
        tokens: Mapping[str, str] | None = None,
        *,
        read_only_tokens: Iterable[str] = (),
        orgs: Mapping[str, Iterable[str]] | None = None,
        tree_page_size: int = 1000,
        expanded_tree_page_size: int = 50,
        lfs_multipart_chunk_size: int | None = None,
        port: int = 0,
        cdn_port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.tokens: dict[str, str] = dict(tokens if tokens is not None else {"hf_localhub_user": "user"})
        self.read_only_tokens = set(read_only_tokens)
        self.orgs = {org: set(members) for org, members in (orgs or {}).items()}
        self.tree_page_size = tree_page_size
        self.expanded_tree_page_size = expanded_tree_page_size
        self.lfs_multipart_chunk_size = lfs_multipart_chunk_size
        self.verbose = verbose
        self._ports = {"hub": port, "cdn": cdn_port}

        #: If set to an HTTP status, every write (POST/PUT/DELETE/PATCH) on either listener fails with it.
        self.fail_all_writes: int | None = None
        #: Every request seen, in order.
        self.requests: list[RequestRecord] = []
        #: Tracebacks of exceptions raised inside the server (should stay empty).
        self.server_errors: list[str] = []
        #: "METHOD /path" of requests no route matched (answered 404) - handy to spot new client calls.
        self.unhandled: list[str] = []

        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lfs_store: dict[str, bytes] = {}  # sha256 -> content (the object store behind the CDN)
        self._multipart: dict[str, dict[int, bytes]] = {}  # sha256 -> part number -> bytes
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(16)
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalHub:
        if self._servers:
            return self
        for role in ("hub", "cdn"):
            handler = type(f"_{role.title()}Handler", (_Handler,), {"hub": self, "role": role})
            server = ThreadingHTTPServer(("127.0.0.1", self._ports[role]), handler)
            server.daemon_threads = True
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},  # shutdown() waits for one poll: keep teardown fast
                name=f"localhub-{role}",
                daemon=True,
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL of the Hub, e.g. `http://127.0.0.1:PORT` (use as `HF_ENDPOINT`)."""
        if not self._servers:
            raise RuntimeError("LocalHub is not started")
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_endpoint(self) -> str:
        """Base URL of the fake CDN / object store that LFS transfers go to."""
        if not self._servers:
            raise RuntimeError("LocalHub is not started")
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # ------------------------------------------------------------------ test helpers

    def fail_next(
        self,
        path_substring: str,
        status: int = 500,
        count: int | None = 1,
        *,
        method: str | None = None,
        server: str | None = None,
        message: str = "Injected failure (LocalHub.fail_next)",
    ) -> None:
        """Make the next `count` requests whose path contains `path_substring` fail with `status`.

        `count=None` fails forever. `method` restricts to one HTTP method, `server` to "hub" or
        "cdn". Paths are matched unquoted, e.g. "/commit/", "/preupload/",
        "/info/lfs/objects/batch", "/upload/" (LFS PUT to the CDN), "/resolve/".

        The client retries 408/429/5xx with backoff (sleeping 1 s, 2 s, 4 s, 8 s, 8 s) on most
        upload calls, so to fail fast use a 4xx, or a 5xx on the commit POST (not retried).
        """
        with self._lock:
            self._failures.append(_Failure(path_substring, status, count, method, server, message))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self.fail_all_writes = None

    def create_repo(self, repo_id: str, repo_type: str = "model", *, private: bool = False) -> None:
        """Create a repo server-side (with its initial commit), bypassing HTTP and auth."""
        with self._lock:
            if (repo_type, repo_id) not in self._repos:
                self._new_repo(repo_type, repo_id, private=private)

    def upload(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str],
        *,
        repo_type: str = "model",
        revision: str = "main",
        message: str = "Upload files (server-side)",
        lfs: bool | None = None,
    ) -> str:
        """Commit files server-side (repo created if needed); returns the commit id.

        `lfs=None` applies the Hub's rules (.gitattributes patterns, size, binary content).
        """
        with self._lock:
            self.create_repo(repo_id, repo_type)
            repo = self._repos[(repo_type, repo_id)]
            head = repo.resolve(revision)
            if head is None:
                raise KeyError(f"revision {revision!r} not found")
            new_files = dict(head.files)
            for path, content in files.items():
                data = content.encode() if isinstance(content, str) else content
                use_lfs = self._needs_lfs(head, path, data[:512], len(data)) if lfs is None else lfs
                if use_lfs and data:
                    sha = hashlib.sha256(data).hexdigest()
                    self._lfs_store[sha] = data
                    new_files[path] = _Entry.lfs(data, sha)
                else:
                    new_files[path] = _Entry.regular(data)
            commit = self._make_commit(new_files, [head.oid], message, "", "localhub")
            repo.commits[commit.oid] = commit
            repo.branches[revision] = commit.oid
            return commit.oid

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def list_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[str]:
        """Sorted paths of the files committed at `revision`."""
        return sorted(self._commit_at(repo_id, repo_type, revision).files)

    def read_file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        """Content of a committed file (the real content for LFS files)."""
        return self._commit_at(repo_id, repo_type, revision).files[path].data

    def file_info(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> dict:
        """`{"size", "lfs" (bool), "oid" (git blob id), "sha256" (LFS only)}` of a committed file."""
        entry = self._commit_at(repo_id, repo_type, revision).files[path]
        return {
            "size": entry.size,
            "lfs": entry.lfs_sha256 is not None,
            "oid": entry.git_oid,
            "sha256": entry.lfs_sha256,
        }

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[dict]:
        """First-parent history at `revision`, newest first: `{"oid", "title", "message", "author"}`."""
        with self._lock:
            repo = self._get_repo_or_raise(repo_type, repo_id)
            head = self._commit_at(repo_id, repo_type, revision)
            return [
                {"oid": c.oid, "title": c.title, "message": c.message, "author": c.author}
                for c in repo.history(head)
            ]

    def branches(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        with self._lock:
            return dict(self._get_repo_or_raise(repo_type, repo_id).branches)

    def _commit_at(self, repo_id: str, repo_type: str, revision: str) -> _Commit:
        with self._lock:
            commit = self._get_repo_or_raise(repo_type, repo_id).resolve(revision)
            if commit is None:
                raise KeyError(f"revision {revision!r} not found in {repo_type} {repo_id}")
            return commit

    def _get_repo_or_raise(self, repo_type: str, repo_id: str) -> _Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on this LocalHub") from None

    # ------------------------------------------------------------------ internals: state

    def _record(self, role: str, req: _Request, status: int) -> None:
        with self._lock:
            self.requests.append(
                RequestRecord(
                    role,
                    req.method,
                    unquote(req.raw_path),
                    urlencode(req.query, doseq=True),
                    status,
                    req.user,
                )
            )

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.endpoint}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    def _make_commit(
        self, files: dict[str, _Entry], parents: list[str], title: str, description: str, author: str
    ) -> _Commit:
        dir_oids = _tree_oids(files)
        ts = int(time.time())
        message = title + (f"\n\n{description}" if description else "")
        body = f"tree {dir_oids['']}\n" + "".join(f"parent {p}\n" for p in parents)
        body += f"author {author} <{author}@users.noreply.localhub> {ts} +0000\n"
        body += f"committer {author} <{author}@users.noreply.localhub> {ts} +0000\n\n{message}\n"
        oid = git_hash("commit", body.encode())
        return _Commit(oid, files, dir_oids, parents, title, message, author, ts)

    def _new_repo(self, repo_type: str, repo_id: str, *, private: bool, sdk: str | None = None) -> _Repo:
        repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=time.time(), sdk=sdk)
        # A fresh repo has an initial commit so that `main` exists (the client loads e.g. the model card
        # from it right after creating the repo).
        initial = self._make_commit(
            {".gitattributes": _Entry.regular(default_gitattributes(repo_type))},
            [],
            "initial commit",
            "",
            "localhub",
        )
        repo.commits[initial.oid] = initial
        repo.branches["main"] = initial.oid
        self._repos[(repo_type, repo_id)] = repo
        return repo

    def _needs_lfs(self, commit: _Commit | None, path: str, sample: bytes, size: int) -> bool:
        """The Hub's rule: LFS if tracked by .gitattributes, larger than 10 MB, or binary."""
        attributes = commit.files.get(".gitattributes") if commit else None
        if any(_match_pattern(p, path) for p in _lfs_patterns(attributes.data if attributes else None)):
            return True
        return size >= LFS_SIZE_THRESHOLD or b"\0" in sample

    def _sign(self, action: str, oid: str) -> str:
        return hmac.new(self._secret, f"{action}:{oid}".encode(), hashlib.sha256).hexdigest()[:32]

    def _cdn_url(self, action: str, oid: str, suffix: str = "") -> str:
        return f"{self.cdn_endpoint}/{action}/{oid}{suffix}?{urlencode({'sig': self._sign(action, oid)})}"

    # ------------------------------------------------------------------ internals: HTTP

    def _error_response(self, err: HubHTTPError) -> Response:
        headers = dict(err.headers)
        if err.error_code:
            headers["X-Error-Code"] = err.error_code
        # The header must be latin-1 encodable: keep it ASCII.
        headers["X-Error-Message"] = err.message.encode("ascii", "replace").decode().replace("\n", " ")
        return Response.json({"error": err.message}, status=err.status, headers=headers)

    def _handle(self, role: str, req: _Request) -> Response:
        self._authenticate(req)
        self._maybe_inject_failure(role, req)
        route = self._route_cdn if role == "cdn" else self._route_hub
        response = route(req)
        if response is None:
            self.unhandled.append(f"{req.method} {req.raw_path}")
            raise HubHTTPError(404, f"LocalHub: no route for {req.method} {unquote(req.raw_path)}")
        return response

    def _authenticate(self, req: _Request) -> None:
        auth = req.headers.get("Authorization") or ""
        if not auth.lower().startswith("bearer "):
            return
        token = auth[len("bearer ") :].strip()
        if token not in self.tokens:
            # Any request with an unknown token is rejected, reads included (as on the Hub).
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        req.user = self.tokens[token]
        req.token_role = "read" if token in self.read_only_tokens else "write"

    def _maybe_inject_failure(self, role: str, req: _Request) -> None:
        path = unquote(req.raw_path)
        with self._lock:
            if self.fail_all_writes and req.method not in ("GET", "HEAD"):
                raise HubHTTPError(self.fail_all_writes, "Injected failure (LocalHub.fail_all_writes)")
            for failure in self._failures:
                if (
                    failure.substring in path
                    and failure.method in (None, req.method)
                    and failure.server in (None, role)
                ):
                    if failure.remaining is not None:
                        failure.remaining -= 1
                        if failure.remaining <= 0:
                            self._failures.remove(failure)
                    raise HubHTTPError(failure.status, failure.message)

    def _can_write_namespace(self, user: str | None, namespace: str) -> bool:
        return user is not None and (user == namespace or user in self.orgs.get(namespace, ()))

    def _require_write(self, req: _Request, namespace: str, what: str = "this repo") -> None:
        if req.user is None:
            raise HubHTTPError(401, "You must be authenticated to perform this action (no token sent)")
        if req.token_role != "write":
            raise HubHTTPError(403, "This action requires a token with write access (the token is read-only)")
        if not self._can_write_namespace(req.user, namespace):
            raise HubHTTPError(
                403, f"You don't have the rights to write to {what} in namespace '{namespace}'"
            )

    def _get_repo(self, req: _Request, repo_type: str, repo_id: str) -> _Repo:
        """Look a repo up with read access checks (a private repo is invisible to others, as on the Hub)."""
        repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self._can_write_namespace(req.user, repo.namespace)):
            status = 401 if req.user is None else 404
            raise HubHTTPError(status, "Repository not found", error_code="RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> _Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", error_code="RevisionNotFound")
        return commit

    @staticmethod
    def _repo_from(segments: list[str]) -> tuple[str, list[str]]:
        if len(segments) < 2:
            raise HubHTTPError(400, "Invalid repo id")
        return f"{unquote(segments[0])}/{unquote(segments[1])}", segments[2:]

    def _route_hub(self, req: _Request) -> Response | None:
        s = req.segments
        m = req.method
        if s[:1] == ["api"]:
            if s[1:] == ["whoami-v2"] and m == "GET":
                return self._whoami(req)
            if s[1:] == ["validate-yaml"] and m == "POST":
                return self._validate_yaml(req)
            if s[1:] == ["repos", "create"] and m == "POST":
                return self._create_repo(req)
            if s[1:] == ["repos", "delete"] and m == "DELETE":
                return self._delete_repo(req)
            if len(s) >= 4 and s[1] in _PLURAL_TO_TYPE:
                repo_type = _PLURAL_TO_TYPE[s[1]]
                repo_id, rest = self._repo_from(s[2:])
                return self._route_repo_api(req, repo_type, repo_id, rest)
            return None
        # git-LFS endpoints and file downloads: /[datasets/|spaces/]{ns}/{name}(.git)/...
        repo_type = "model"
        if s and s[0] in _PLURAL_TO_TYPE and s[0] != "models":
            repo_type, s = _PLURAL_TO_TYPE[s[0]], s[1:]
        if len(s) >= 3 and s[1].endswith(".git") and s[2:5] == ["info", "lfs", "objects"]:
            repo_id = f"{unquote(s[0])}/{unquote(s[1][: -len('.git')])}"
            if s[5:] == ["batch"] and m == "POST":
                return self._lfs_batch(req, repo_type, repo_id)
            if s[5:] == ["verify"] and m == "POST":
                return self._lfs_verify(req, repo_type, repo_id)
            return None
        if len(s) >= 5 and s[2] == "resolve" and m in ("GET", "HEAD"):
            repo_id, rest = self._repo_from(s)
            return self._resolve_file(
                req, repo_type, repo_id, unquote(rest[1]), "/".join(unquote(p) for p in rest[2:])
            )
        return None

    def _route_repo_api(
        self, req: _Request, repo_type: str, repo_id: str, rest: list[str]
    ) -> Response | None:
        m = req.method
        action = rest[0] if rest else ""
        # A revision is one %-quoted segment; tolerate an unquoted multi-segment one (e.g. refs/pr/1).
        rev = unquote("/".join(rest[1:])) if len(rest) > 1 else "main"
        with self._lock:
            if not rest and m == "GET":
                return self._repo_info(req, repo_type, repo_id, None)
            if action == "revision" and m == "GET":
                return self._repo_info(req, repo_type, repo_id, rev)
            if action == "tree" and m == "GET" and len(rest) >= 2:
                path = "/".join(unquote(p) for p in rest[2:]).strip("/")
                return self._tree(req, repo_type, repo_id, unquote(rest[1]), path)
            if action == "paths-info" and m == "POST":
                return self._paths_info(req, repo_type, repo_id, rev)
            if action == "preupload" and m == "POST":
                return self._preupload(req, repo_type, repo_id, rev)
            if action == "commit" and m == "POST":
                return self._commit(req, repo_type, repo_id, rev)
            if action == "commits" and m == "GET":
                return self._list_commits(req, repo_type, repo_id, rev)
            if action == "refs" and m == "GET":
                return self._refs(req, repo_type, repo_id)
            if action == "branch" and m in ("POST", "DELETE") and len(rest) > 1:
                return self._branch(req, repo_type, repo_id, rev)
            if action == "tag" and m in ("POST", "DELETE") and len(rest) > 1:
                return self._tag(req, repo_type, repo_id, rev)
            if action == "settings" and m == "PUT":
                return self._settings(req, repo_type, repo_id)
            if action in ("xet-write-token", "xet-read-token"):
                raise HubHTTPError(
                    501, "LocalHub does not implement Xet storage: run the client with HF_HUB_DISABLE_XET=1"
                )
        return None

    def _route_cdn(self, req: _Request) -> Response | None:
        s = req.segments
        sig = req.param("sig") or ""
        if len(s) >= 2 and s[0] in ("upload", "lfs"):
            oid = s[1]
            if not _SHA256_RE.match(oid) or not hmac.compare_digest(sig, self._sign(s[0], oid)):
                raise HubHTTPError(403, "Invalid or missing signature on CDN URL")
            if s[0] == "lfs" and len(s) == 2 and req.method in ("GET", "HEAD"):
                with self._lock:
                    data = self._lfs_store.get(oid)
                if data is None:
                    raise HubHTTPError(404, "LFS object not found")
                return _serve_bytes(req, data, {"ETag": f'"{oid}"'})
            if s[0] == "upload" and len(s) == 2 and req.method == "PUT":
                return self._cdn_put_object(req, oid)
            if s[0] == "upload" and len(s) == 4 and s[2] == "part" and req.method == "PUT":
                with self._lock:
                    self._multipart.setdefault(oid, {})[int(s[3])] = req.body
                return Response(200, b"", {"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})
            if s[0] == "upload" and len(s) == 2 and req.method == "POST":
                return self._cdn_complete_multipart(req, oid)
        return None

    # ------------------------------------------------------------------ routes: account / repos

    def _whoami(self, req: _Request) -> Response:
        if req.user is None:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        orgs = [
            {"type": "org", "name": org, "fullname": org, "roleInOrg": "write"}
            for org, members in self.orgs.items()
            if req.user in members
        ]
        return Response.json(
            {
                "type": "user",
                "id": hashlib.sha1(req.user.encode()).hexdigest()[:24],
                "name": req.user,
                "fullname": req.user,
                "email": f"{req.user}@example.invalid",
                "emailVerified": True,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": orgs,
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "localhub", "role": req.token_role, "createdAt": _iso(0)},
                },
            }
        )

    def _validate_yaml(self, req: _Request) -> Response:
        payload = req.json()
        if not isinstance(payload.get("content"), str):
            raise HubHTTPError(400, "Missing `content`")
        # No YAML parser in the stdlib: accept any metadata (the real Hub validates it against a schema).
        return Response.json({"errors": [], "warnings": []})

    def _create_repo(self, req: _Request) -> Response:
        payload = req.json()
        repo_type = payload.get("type") or "model"
        name = payload.get("name") or ""
        if repo_type not in REPO_TYPES:
            raise HubHTTPError(400, f"Invalid repo type: {repo_type}")
        if req.user is None:
            raise HubHTTPError(401, "You must be authenticated to create a repo (no token sent)")
        namespace = payload.get("organization") or req.user
        if not _NAME_RE.match(name) or "--" in name or ".." in name or name.endswith(".git"):
            raise HubHTTPError(400, f"Invalid repo name: {name!r}")
        self._require_write(req, namespace, f"create a {repo_type}")
        repo_id = f"{namespace}/{name}"
        with self._lock:
            existing = self._repos.get((repo_type, repo_id))
            if existing is not None:
                # The client relies on `url` being present even in the 409 body when exist_ok=True.
                return Response.json(
                    {"error": f"You already created this {repo_type} repo", "url": self._repo_url(existing)},
                    status=409,
                )
            private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
            repo = self._new_repo(repo_type, repo_id, private=private, sdk=payload.get("sdk"))
            return Response.json({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _delete_repo(self, req: _Request) -> Response:
        payload = req.json()
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or req.user or ""
        repo_id = f"{namespace}/{payload.get('name')}"
        with self._lock:
            self._get_repo(req, repo_type, repo_id)
            self._require_write(req, namespace)
            del self._repos[(repo_type, repo_id)]
        return Response.json({})

    def _settings(self, req: _Request, repo_type: str, repo_id: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        self._require_write(req, repo.namespace)
        payload = req.json()
        if "visibility" in payload:
            repo.private = payload["visibility"] != "public"
        elif "private" in payload:
            repo.private = bool(payload["private"])
        return Response.json({})

    def _repo_info(self, req: _Request, repo_type: str, repo_id: str, revision: str | None) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        commit = self._resolve(repo, revision or "main")
        with_blobs = req.flag("blobs")
        siblings = []
        for path in sorted(commit.files):
            sibling: dict[str, Any] = {"rfilename": path}
            entry = commit.files[path]
            if with_blobs:
                sibling.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs_sha256:
                    sibling["lfs"] = {
                        "size": entry.size,
                        "sha256": entry.lfs_sha256,
                        "pointerSize": entry.pointer_size,
                    }
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo.namespace,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": _iso(repo.created_at),
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.files.values()),
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        elif repo_type == "dataset":
            info.update(description="", citation="", paperswithcode_id=None)
        elif repo_type == "space":
            info.update(sdk=repo.sdk, runtime={"stage": "NO_APP_FILE", "hardware": {"current": None}})
        expand = req.query.get("expand") or req.query.get("expand[]")
        if expand:  # only the requested properties (plus the id) are returned, as on the Hub
            info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
        return Response.json(info)

    def _refs(self, req: _Request, repo_type: str, repo_id: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        out: dict[str, Any] = {
            "branches": [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in repo.branches.items()
            ],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in repo.tags.items()],
            "converts": [],
        }
        if req.flag("include_prs"):
            out["pullRequests"] = [
                {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": o}
                for n, o in repo.pull_requests.items()
            ]
        return Response.json(out)

    def _branch(self, req: _Request, repo_type: str, repo_id: str, branch: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        self._require_write(req, repo.namespace)
        if req.method == "DELETE":
            if branch not in repo.branches:
                raise HubHTTPError(404, f"Branch {branch} not found", error_code="RevisionNotFound")
            if branch == "main":
                raise HubHTTPError(403, "Cannot delete the default branch")
            del repo.branches[branch]
            return Response.json({})
        if branch in repo.branches:
            raise HubHTTPError(409, f"Reference already exists: refs/heads/{branch}")
        start = self._resolve(repo, req.json().get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        return Response.json({})

    def _tag(self, req: _Request, repo_type: str, repo_id: str, rev_or_tag: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        self._require_write(req, repo.namespace)
        if req.method == "DELETE":
            if repo.tags.pop(rev_or_tag, None) is None:
                raise HubHTTPError(404, f"Tag {rev_or_tag} not found", error_code="RevisionNotFound")
            return Response.json({})
        tag = req.json().get("tag")
        if not tag:
            raise HubHTTPError(400, "Missing `tag`")
        if tag in repo.tags:
            raise HubHTTPError(409, f"Tag {tag} already exists")
        repo.tags[tag] = self._resolve(repo, rev_or_tag).oid
        return Response.json({})

    def _list_commits(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        head = self._resolve(repo, revision)
        return Response.json(
            [
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": c.message,
                    "authors": [{"user": c.author, "avatar": ""}],
                    "date": c.date,
                    "formatted": {"title": c.title, "message": c.message},
                }
                for c in repo.history(head)
            ]
        )

    # ------------------------------------------------------------------ routes: listing

    def _path_info(
        self, repo: _Repo, commit: _Commit, path: str, is_dir: bool, expand: bool
    ) -> dict[str, Any]:
        if is_dir:
            info: dict[str, Any] = {
                "type": "directory",
                "oid": commit.dir_oids[path],
                "size": 0,
                "path": path,
            }
        else:
            entry = commit.files[path]
            info = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
            if entry.lfs_sha256:
                info["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        if expand:
            last = repo.last_commit_for(commit, path, is_dir)
            info["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
            if not is_dir:
                info["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
        return info

    def _tree(self, req: _Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        commit = self._resolve(repo, revision)
        if path and path not in commit.dir_oids:
            raise HubHTTPError(404, f"Entry not found: {path}", error_code="EntryNotFound")
        recursive, expand = req.flag("recursive"), req.flag("expand")
        prefix = f"{path}/" if path else ""
        entries: list[tuple[str, bool]] = []
        for directory in commit.dir_oids:
            if (
                directory
                and directory.startswith(prefix)
                and (recursive or "/" not in directory[len(prefix) :])
            ):
                entries.append((directory, True))
        for file_path in commit.files:
            if file_path.startswith(prefix) and (recursive or "/" not in file_path[len(prefix) :]):
                entries.append((file_path, False))
        entries.sort()
        # Cursor pagination with a GitHub-style `Link: <...>; rel="next"` header, like the Hub.
        page_size = self.expanded_tree_page_size if expand else self.tree_page_size
        start = int(req.param("cursor") or 0)
        page = entries[start : start + page_size]
        headers = {}
        if start + page_size < len(entries):
            query = {k: v for k, v in req.query.items() if k != "cursor"}
            query["cursor"] = [str(start + page_size)]
            headers["Link"] = f'<{self.endpoint}{req.raw_path}?{urlencode(query, doseq=True)}>; rel="next"'
        return Response.json([self._path_info(repo, commit, p, d, expand) for p, d in page], headers=headers)

    def _paths_info(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        commit = self._resolve(repo, revision)
        # The client posts a form (`paths=a&paths=b&expand=false`); accept JSON as well.
        if "json" in (req.headers.get("Content-Type") or ""):
            payload = req.json()
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = parse_qs(req.body.decode(), keep_blank_values=True)
            paths, expand = (
                form.get("paths", []),
                (form.get("expand") or ["false"])[0].lower() in ("1", "true"),
            )
        out = []
        for raw in paths:
            path = raw.strip("/")
            if path in commit.files:
                out.append(self._path_info(repo, commit, path, False, expand))
            elif path in commit.dir_oids and path:
                out.append(self._path_info(repo, commit, path, True, expand))
        return Response.json(out)

    # ------------------------------------------------------------------ routes: upload

    def _writable_target(
        self, req: _Request, repo_type: str, repo_id: str, revision: str
    ) -> tuple[_Repo, _Commit]:
        repo = self._get_repo(req, repo_type, repo_id)
        if not req.flag("create_pr"):  # PRs can be opened with read access
            self._require_write(req, repo.namespace)
        elif req.user is None:
            raise HubHTTPError(401, "You must be authenticated to open a pull request")
        return repo, self._resolve(repo, revision)

    def _preupload(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> Response:
        _repo, commit = self._writable_target(req, repo_type, repo_id, revision)
        payload = req.json()
        gitignore = payload.get("gitIgnore")
        if gitignore is None and ".gitignore" in commit.files:
            gitignore = commit.files[".gitignore"].data.decode(errors="replace")
        files = []
        for item in payload.get("files", []):
            path, size = item["path"], int(item.get("size", 0))
            sample = base64.b64decode(item.get("sample") or "")
            existing = commit.files.get(path)
            files.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if self._needs_lfs(commit, path, sample, size) else "regular",
                    "shouldIgnore": _is_ignored(gitignore, path),
                    # The client skips unchanged files: sha256 for LFS files, git blob id otherwise.
                    "oid": (existing.etag if existing else None),
                }
            )
        return Response.json({"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, req: _Request, repo_type: str, repo_id: str) -> Response:
        payload = req.json()
        operation = payload.get("operation")
        with self._lock:
            repo = self._get_repo(req, repo_type, repo_id)
            if operation == "upload":
                self._require_write(req, repo.namespace)
            objects = []
            for obj in payload.get("objects", []):
                oid, size = str(obj.get("oid")), int(obj.get("size", -1))
                item: dict[str, Any] = {"oid": oid, "size": size}
                if not _SHA256_RE.match(oid) or size < 0:
                    item["error"] = {"code": 422, "message": "Invalid oid or size"}
                elif operation == "download":
                    if oid in self._lfs_store:
                        item["actions"] = {"download": {"href": self._cdn_url("lfs", oid)}}
                    else:
                        item["error"] = {"code": 404, "message": "Object does not exist"}
                elif oid not in self._lfs_store:
                    # (objects already stored get no `actions`: the client then skips their upload)
                    verify = f"{self._repo_url(repo)}.git/info/lfs/objects/verify"
                    chunk = self.lfs_multipart_chunk_size
                    if chunk and size > 0:
                        n_parts = -(-size // chunk)
                        header = {"chunk_size": str(chunk)}
                        header.update(
                            {
                                str(i): self._cdn_url("upload", oid, f"/part/{i}")
                                for i in range(1, n_parts + 1)
                            }
                        )
                        upload = {"href": self._cdn_url("upload", oid), "header": header}
                    else:
                        upload = {"href": self._cdn_url("upload", oid)}
                    item["authenticated"] = True
                    item["actions"] = {"upload": upload, "verify": {"href": verify}}
                objects.append(item)
        transfer = "multipart" if self.lfs_multipart_chunk_size else "basic"
        return Response(
            200,
            json.dumps({"transfer": transfer, "objects": objects, "hash_algo": "sha256"}).encode(),
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _store_lfs_object(self, oid: str, data: bytes) -> Response:
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubHTTPError(400, "Uploaded content does not match its sha256 oid")
        with self._lock:
            self._lfs_store[oid] = data
        return Response(200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    def _cdn_put_object(self, req: _Request, oid: str) -> Response:
        return self._store_lfs_object(oid, req.body)

    def _cdn_complete_multipart(self, req: _Request, oid: str) -> Response:
        payload = req.json()
        with self._lock:
            parts = self._multipart.pop(oid, {})
        data = b""
        for part in payload.get("parts", []):
            content = parts.get(int(part["partNumber"]))
            if content is None or part.get("etag") != f'"{hashlib.md5(content).hexdigest()}"':
                raise HubHTTPError(400, f"Missing or mismatched part {part.get('partNumber')}")
            data += content
        return self._store_lfs_object(oid, data)

    def _lfs_verify(self, req: _Request, repo_type: str, repo_id: str) -> Response:
        payload = req.json()
        with self._lock:
            self._get_repo(req, repo_type, repo_id)
            data = self._lfs_store.get(str(payload.get("oid")))
        if data is None or len(data) != payload.get("size"):
            raise HubHTTPError(404, "LFS object not found or size mismatch")
        return Response.json({"success": True})

    def _commit(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo, base = self._writable_target(req, repo_type, repo_id, revision)
        create_pr = req.flag("create_pr")
        if not create_pr and revision not in repo.branches and not revision.startswith("refs/pr/"):
            raise HubHTTPError(400, f"Invalid rev id: {revision} is not a branch")
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "The commit payload must be NDJSON starting with a `header` line")
        header = lines[0]["value"]
        summary = (header.get("summary") or "").strip()
        if not summary:
            raise HubHTTPError(400, "Commit summary is required")
        parent = header.get("parentCommit")
        if parent and parent != base.oid:
            raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(base.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = str(value.get("path", "")).strip("/")
            if key == "file":
                content = value.get("content", "")
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                if len(data) >= LFS_SIZE_THRESHOLD or b"\0" in data[:8000]:
                    raise HubHTTPError(
                        400,
                        f"Your push was rejected because it contains binary or large files ({path}): use LFS",
                    )
                files[path] = _Entry.regular(data)
            elif key == "lfsFile":
                oid = value.get("oid")
                data = self._lfs_store.get(oid or "")
                if data is None:
                    raise HubHTTPError(
                        422,
                        "Your push was rejected because an LFS pointer pointed to a file that does not exist "
                        f"({path})",
                    )
                files[path] = _Entry.lfs(data, oid)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubHTTPError(
                        404, f"A file with this name doesn't exist: {path}", error_code="EntryNotFound"
                    )
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(path + "/") or not path]
                if not doomed:
                    raise HubHTTPError(
                        404, f"A folder with this name doesn't exist: {path}", error_code="EntryNotFound"
                    )
                for p in doomed:
                    del files[p]
            else:
                raise HubHTTPError(400, f"Unknown commit operation: {key!r}")
        commit = self._make_commit(
            files, [base.oid], summary, header.get("description") or "", req.user or "anonymous"
        )
        repo.commits[commit.oid] = commit
        out: dict[str, Any] = {"success": True, "commitOid": commit.oid, "hookOutput": ""}
        out["commitUrl"] = f"{self._repo_url(repo)}/commit/{commit.oid}"
        if create_pr:
            number = max(repo.pull_requests, default=0) + 1
            repo.pull_requests[number] = commit.oid
            out["pullRequestUrl"] = f"{self._repo_url(repo)}/discussions/{number}"
        elif revision.startswith("refs/pr/"):
            repo.pull_requests[int(revision.rsplit("/", 1)[1])] = commit.oid
        else:
            repo.branches[revision] = commit.oid
        return Response.json(out)

    # ------------------------------------------------------------------ routes: download

    def _resolve_file(
        self, req: _Request, repo_type: str, repo_id: str, revision: str, path: str
    ) -> Response:
        with self._lock:
            repo = self._get_repo(req, repo_type, repo_id)
            commit = self._resolve(repo, revision)
            entry = commit.files.get(path)
        headers = {"X-Repo-Commit": commit.oid}
        if entry is None:
            # X-Repo-Commit on the 404 lets the client cache the file's absence (.no_exist/<commit>/<path>).
            raise HubHTTPError(404, "Entry not found", error_code="EntryNotFound", headers=headers)
        if entry.lfs_sha256:
            # LFS content lives on the "CDN" (another origin): redirect with the linked metadata. The client
            # reads X-Linked-Etag / X-Linked-Size from this very response and downloads without auth.
            headers.update(
                {
                    "ETag": f'"{entry.git_oid}"',
                    "X-Linked-Etag": f'"{entry.lfs_sha256}"',
                    "X-Linked-Size": str(entry.size),
                    "Location": self._cdn_url("lfs", entry.lfs_sha256),
                    "Content-Type": "text/plain; charset=utf-8",
                }
            )
            return Response(302, b"Found. Redirecting to the LFS object", headers)
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        headers.update({"ETag": f'"{entry.git_oid}"', "Content-Type": content_type})
        return _serve_bytes(req, entry.data, headers)


def hub_file_url(
    endpoint: str, repo_id: str, filename: str, repo_type: str = "model", revision: str = "main"
) -> str:
    """`/resolve/` URL of a file, quoted like the client does."""
    return (
        f"{endpoint}/{_URL_PREFIX[repo_type]}{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"
    )
