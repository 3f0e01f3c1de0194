"""A Hugging Face Hub on 127.0.0.1 for tests: the routes ``huggingface_hub`` uses to download and to push.

It serves model repositories that tests create (``LocalHub.add``) or push (``HfApi.upload_folder``), with the
headers the client checks (``X-Repo-Commit``, ``ETag``, ``Content-Length``, ``X-Error-Code``), ``Range``
requests for resumed downloads, and one fault: ``drop_once`` ends the first download of a file halfway.

Routes: model info at a revision (``/api/models/{repo}/revision/{rev}``), the file tree
(``/api/models/{repo}/tree/{rev}``), file resolve (HEAD and GET ``/{repo}/resolve/{rev}/{path}``), repository
creation (``/api/repos/create``), model-card metadata check (``/api/validate-yaml``: the README's front matter
must parse to a mapping), pre-upload (every file ``regular``) and commit (``/api/models/{repo}/commit/{rev}``,
NDJSON with base64 content). Written by hand: no maintained Hub server exists to run in a test.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
ROUTES = [
    ("GET", re.compile(rf"^/api/models/{REPO}/revision/(?P<rev>[^/]+)$"), "info"),
    ("GET", re.compile(rf"^/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), "tree"),
    ("HEAD", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ("GET", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("POST", re.compile(rf"^/api/models/{REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
]


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def commit(self, files: dict[str, bytes], branch: str = "main") -> str:
        parent = self.refs.get(branch, "")
        listing = "".join(f"{p}\0{git_blob_id(d)}\n" for p, d in sorted(files.items()))
        sha = hashlib.sha1(f"{parent}\n{listing}".encode()).hexdigest()
        self.commits[sha] = dict(files)
        self.refs[branch] = sha
        return sha


class LocalHub:
    """A threaded Hub server; ``url`` is its endpoint (for ``HF_ENDPOINT``). Use as a context manager."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.drop_once: set[tuple[str, str]] = set()   # (repo, path): the next GET of it stops halfway
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Commit ``files`` to ``repo_id`` (created if new) on ``branch``; returns the 40-hex commit."""
        return self.repos.setdefault(repo_id, Repo()).commit(files, branch)

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(hub: LocalHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self):
            self._route("GET")

        def do_HEAD(self):
            self._route("HEAD")

        def do_POST(self):
            self._route("POST")

        def _route(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((method, path))
            for verb, pattern, name in ROUTES:
                if verb == method and (m := pattern.match(path)):
                    return getattr(self, f"_{name}")(**{k: v for k, v in m.groupdict().items()})
            self._error(404, "EntryNotFound", f"no route {method} {path}")

        # ---------------------------------------------------------------- replies
        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, length: int | None = None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, value, status: int = 200) -> None:
            self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, json.dumps({"error": message}).encode(),
                       {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message})

        def _files(self, repo: str, rev: str) -> tuple[str, dict[str, bytes]] | None:
            if repo not in hub.repos:
                self._error(404, "RepoNotFound", f"Repository {repo} not found")
                return None
            r = hub.repos[repo]
            sha = r.refs.get(rev, rev)
            if sha not in r.commits:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return None
            return sha, r.commits[sha]

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        # ---------------------------------------------------------------- routes
        def _info(self, repo: str, rev: str) -> None:
            if found := self._files(repo, rev):
                sha, files = found
                self._json({"id": repo, "modelId": repo, "sha": sha, "private": False, "gated": False,
                            "siblings": [{"rfilename": p} for p in sorted(files)]})

        def _tree(self, repo: str, rev: str, path: str | None = None) -> None:
            if found := self._files(repo, rev):
                _, files = found
                self._json([{"type": "file", "path": p, "size": len(d), "oid": git_blob_id(d)}
                            for p, d in sorted(files.items()) if not path or p.startswith(path.rstrip("/") + "/")])

        def _resolve(self, repo: str, rev: str, path: str) -> None:
            if not (found := self._files(repo, rev)):
                return
            sha, files = found
            if path not in files:
                return self._error(404, "EntryNotFound", f"{path} does not exist at {rev}")
            data = files[path]
            headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"', "Accept-Ranges": "bytes",
                       "Content-Type": "application/octet-stream"}
            start = 0
            if m := re.match(r"bytes=(\d+)-", self.headers.get("Range", "")):
                start = int(m.group(1))
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            if self.command == "GET" and (repo, path) in hub.drop_once:
                hub.drop_once.discard((repo, path))
                self._send(200, data[: len(data) // 2], headers, length=len(data))
                self.close_connection = True
                return
            self._send(206 if start else 200, data[start:], headers)

        def _create(self) -> None:
            body = json.loads(self._body() or b"{}")
            repo = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            if repo in hub.repos:
                return self._error(409, "RepoExists", "You already created this model repo")
            hub.repos[repo] = Repo()
            self._json({"url": f"{hub.url}/{repo}", "name": repo})

        def _validate_yaml(self) -> None:
            import yaml

            text = json.loads(self._body())["content"]
            front = re.match(r"\A---\n(.*?)\n---\n", text, re.S)
            try:
                meta = yaml.safe_load(front.group(1)) if front else "no metadata block"
            except yaml.YAMLError as e:
                meta = e
            if not isinstance(meta, dict):
                return self._send(400, json.dumps({"errors": [{"message": f"not a YAML mapping: {meta}"}]}).encode(),
                                  {"Content-Type": "application/json", "X-Error-Code": "BadRequest"})
            self._json({"warnings": []})

        def _preupload(self, repo: str, rev: str) -> None:
            body = json.loads(self._body())
            self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                  for f in body["files"]]})

        def _commit(self, repo: str, rev: str) -> None:
            if repo not in hub.repos:
                return self._error(404, "RepoNotFound", f"Repository {repo} not found")
            r = hub.repos[repo]
            files = dict(r.commits.get(r.refs.get(rev, ""), {}))
            for line in self._body().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
            sha = r.commit(files, rev)
            self._json({"commitUrl": f"{hub.url}/{repo}/commit/{sha}", "commitOid": sha,
                        "pullRequestUrl": None, "success": True})

    return Handler
