"""The registry HTTP client both the ephemeral registry and the shared cache push through, against
a loopback stand-in that answers as a misbehaving registry would: each client keeps its own
messages, and neither sends a blob to a host other than its registry's."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from bottle_engine.artifacts.oci import (
    MEDIA_CONFIG,
    MEDIA_LAYER,
    MEDIA_MANIFEST,
    canonical_json,
    write_layout_index,
)
from bottle_engine.artifacts.registry import REPOSITORY, EphemeralRegistry, _wait_ready
from bottle_engine.artifacts.remote import RemoteCache, RemoteCacheError, parse_location
from bottle_engine.artifacts.spec import Artifact
from bottle_engine.errors import BottleError


class _Registry(http.server.BaseHTTPRequestHandler):
    """No blob is there; a POST answers `upload_status` with `upload_location`; a manifest PUT
    answers `manifest_status`. Every request is recorded."""

    seen: ClassVar[list[tuple[str, str]]] = []
    upload_status = 202
    upload_location = "/v2/upload/1"
    manifest_status = 201
    documents: ClassVar[dict[str, bytes]] = {}  # GET path (no query) -> JSON answered 200
    challenge = ""  # a WWW-Authenticate answered with 401 to /v2/ without Authorization

    def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path))
        document = self.documents.get(self.path.split("?", 1)[0])
        if document is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)
        elif self.path == "/v2/" and self.challenge and not self.headers["Authorization"]:
            self._answer(401, {"WWW-Authenticate": self.challenge})
        else:
            self._answer(200 if self.path == "/v2/" else 404)

    def do_HEAD(self) -> None:
        self.seen.append(("HEAD", self.path))
        self._answer(404)

    def do_POST(self) -> None:
        self.seen.append(("POST", self.path))
        self._answer(self.upload_status, {"Location": self.upload_location})

    def do_PUT(self) -> None:
        self.seen.append(("PUT", self.path))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        stored = {"Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()}
        self._answer(self.manifest_status if "/manifests/" in self.path else 201, stored)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Stand:
    port: int

    @property
    def remote(self) -> RemoteCache:
        return RemoteCache(parse_location(f"127.0.0.1:{self.port}/bot-bottle"))

    @property
    def ephemeral(self) -> EphemeralRegistry:
        return EphemeralRegistry(container_id="none", port=self.port)


@pytest.fixture
def stand() -> Iterator[Stand]:
    _Registry.seen = []
    _Registry.upload_status, _Registry.manifest_status = 202, 201
    _Registry.upload_location = "/v2/upload/1"
    _Registry.documents, _Registry.challenge = {}, ""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Stand(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _blob(blobs: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


@pytest.fixture
def artifact(tmp_path: Path) -> Artifact:
    """A one-layer OCI layout (the bytes need not be an image: no registry here unpacks it)."""
    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    config = {"mediaType": MEDIA_CONFIG, **_blob(blobs, b'{"architecture":"amd64"}')}
    layer = {"mediaType": MEDIA_LAYER, **_blob(blobs, b"not really a gzipped tar")}
    manifest = canonical_json(
        {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config, "layers": [layer]}
    )
    described = _blob(blobs, manifest)
    write_layout_index(layout, str(described["digest"]), len(manifest))
    return Artifact("sha256:" + "a" * 64, str(described["digest"]), layout, "bot-bottle/agent:x")


def test_neither_client_sends_a_blob_to_an_upload_location_on_another_host(
    stand: Stand, artifact: Artifact
) -> None:
    _Registry.upload_location = "http://collector.invalid/upload"
    with pytest.raises(RemoteCacheError, match=r"sent the upload of .* to another host"):
        stand.remote.push(artifact, "agent")
    with pytest.raises(BottleError, match="the ephemeral registry sent the upload to another"):
        stand.ephemeral.push_layout(artifact.layout_dir, artifact.digest)
    assert not [path for method, path in _Registry.seen if method == "PUT"]


def test_the_ephemeral_registry_must_answer_as_the_spec_says_the_shared_cache_need_not(
    stand: Stand, artifact: Artifact
) -> None:
    _Registry.upload_status = 200
    with pytest.raises(BottleError) as raised:
        stand.ephemeral.push_layout(artifact.layout_dir, artifact.digest)
    assert "the ephemeral registry answered 200, expected 202" in str(raised.value)
    assert "BOTTLE_REGISTRY_IMAGE" in str(raised.value.fix)
    assert stand.remote.push(artifact, "agent") == "pushed"


def test_a_write_answered_404_is_the_shared_caches_error_not_an_absence(
    stand: Stand, artifact: Artifact
) -> None:
    _Registry.manifest_status = 404
    with pytest.raises(RemoteCacheError, match=r"push manifest .* answered 404"):
        stand.remote.push(artifact, "agent")
    with pytest.raises(BottleError, match=r"push manifest .*the ephemeral registry answered 404"):
        stand.ephemeral.push_layout(artifact.layout_dir, artifact.digest)


def test_the_ephemeral_registry_is_reached_directly_whatever_the_proxy_settings(
    stand: Stand, artifact: Artifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build host behind a proxy sets HTTP_PROXY, often without NO_PROXY; the proxy (here a
    loopback port nothing listens on) cannot reach this host's 127.0.0.1."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    _wait_ready(None, stand.ephemeral)
    stand.ephemeral.push_layout(artifact.layout_dir, artifact.digest)
    assert ("PUT", f"/v2/{REPOSITORY}/manifests/{artifact.digest}") in _Registry.seen


@pytest.mark.parametrize("answer", [b'{"tags": 5}', b'{"tags": {"a": 1}}', b"[]", b'"tags"'])
def test_a_tag_list_of_another_shape_is_the_shared_caches_error_not_a_crash(
    stand: Stand, answer: bytes
) -> None:
    """Whoever runs the registry writes its tag list: `{"tags": 5}` raised TypeError through
    `cache ls --remote`, a traceback instead of a message naming the registry."""
    _Registry.documents["/v2/bot-bottle/tags/list"] = answer
    with pytest.raises(RemoteCacheError, match="answered the tag list with"):
        stand.remote.entries()


@pytest.mark.parametrize("answer", [b"[]", b'"a token"', b"5"])
def test_a_token_service_answer_of_another_shape_is_refused_access_not_a_crash(
    stand: Stand, answer: bytes
) -> None:
    """The token service named by the registry's challenge answered a JSON list: `.get` on it
    raised AttributeError, a traceback instead of the refused-access message."""
    _Registry.challenge = f'Bearer realm="http://127.0.0.1:{stand.port}/token",service="x"'
    _Registry.documents["/token"] = answer
    remote = RemoteCache(parse_location(f"127.0.0.1:{stand.port}/bot-bottle"), ("user", "pw"))
    with pytest.raises(RemoteCacheError, match=r"get a token: .* refused access"):
        remote.entries()
