"""The shared cache's pure parts: where it is, which scheme, credentials, what a key index and a
manifest from the registry must look like before a byte of them is trusted."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from bottle_engine.artifacts.inputs import INPUT_KEY_VERSION
from bottle_engine.artifacts.oci import MEDIA_CONFIG, MEDIA_LAYER, MEDIA_MANIFEST, canonical_json
from bottle_engine.artifacts.remote import (
    ANNOTATION_INPUT_KEY,
    ANNOTATION_KEY_VERSION,
    MAX_DOCUMENT_BYTES,
    RemoteCache,
    RemoteCacheError,
    blob_descriptors,
    docker_credentials,
    key_index,
    key_tag,
    listening_uids,
    location_of,
    parse_location,
    read_key_index,
)
from bottle_engine.errors import BottleError
from bottle_engine.settings import EngineSettings
from tests.host_users import NOBODY

KEY = "sha256:" + "a" * 64
DIGEST = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("text", "insecure", "url"),
    [
        ("localhost:5000/team/cache", False, "http://localhost:5000"),
        ("127.0.0.1:5000/cache", False, "http://127.0.0.1:5000"),
        ("[::1]:5000/cache", False, "http://[::1]:5000"),
        ("registry.example.com/team/cache", False, "https://registry.example.com"),
        ("registry.example.com:5000/cache", True, "http://registry.example.com:5000"),
        ("localhost.example.com/cache", False, "https://localhost.example.com"),
    ],
)
def test_plain_http_only_for_loopback_unless_configured(
    text: str, insecure: bool, url: str
) -> None:
    assert parse_location(text, insecure=insecure).base_url == url


@pytest.mark.parametrize(
    "text", ["registry.example.com", "host/Upper", "host/../x", "user@host/repo", "host:x/repo"]
)
def test_a_malformed_location_names_the_variable(text: str) -> None:
    with pytest.raises(BottleError, match=r"BOTTLE_ARTIFACT_REGISTRY=.*HOST\[:PORT\]/REPOSITORY"):
        parse_location(text)


def test_location_is_none_when_unset() -> None:
    assert location_of(EngineSettings.from_env({})) is None
    location = location_of(
        EngineSettings.from_env(
            {"BOTTLE_ARTIFACT_REGISTRY": "cache.lan/x", "BOTTLE_ARTIFACT_REGISTRY_INSECURE": "1"}
        )
    )
    assert location is not None and location.plain_http


def test_credentials_come_from_the_docker_config(tmp_path: Path) -> None:
    auth = base64.b64encode(b"me:s3cret:with-colon").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"https://cache.lan": {"auth": auth}}})
    )
    config_dir = EngineSettings.from_env({"DOCKER_CONFIG": str(tmp_path)}).docker_config_dir
    assert docker_credentials("cache.lan", config_dir) == ("me", "s3cret:with-colon")
    assert docker_credentials("other.lan", config_dir) is None
    assert docker_credentials("cache.lan", tmp_path / "none") is None


def test_key_index_is_canonical_and_reads_back() -> None:
    body = key_index(KEY, "agent", DIGEST, 512)
    assert body == key_index(KEY, "agent", DIGEST, 512)  # two machines push the same bytes
    entry, size = read_key_index(body, KEY, "cache.lan/x")
    assert (entry.digest, entry.name, size) == (DIGEST, "agent", 512)


def _index(**changes: object) -> bytes:
    index = json.loads(key_index(KEY, "agent", DIGEST, 512))
    annotations = index["annotations"]
    for name, value in changes.items():
        if name in ("digest", "size"):
            index["manifests"][0][name] = value
        else:
            annotations[name] = value
    return canonical_json(index)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (_index(**{ANNOTATION_INPUT_KEY: "sha256:" + "c" * 64}), "annotated with key"),
        (_index(**{ANNOTATION_KEY_VERSION: "bot-bottle-artifact/0"}), "key version"),
        (_index(**{"org.bot-bottle.name": "../../etc"}), "not a valid image name"),
        (_index(digest="sha256:../../x"), "not sha256"),
        (_index(size=10**9), "size is out of range"),
        (b"not json", "not a bot-bottle key index"),
        (b'{"manifests":[]}', "not a bot-bottle key index"),
        (b"[" * 5000 + b"]" * 5000, "not a bot-bottle key index"),  # past the parser's depth
    ],
)
def test_a_key_index_that_promises_anything_else_is_refused(body: bytes, why: str) -> None:
    with pytest.raises(RemoteCacheError, match=why):
        read_key_index(body, KEY, "cache.lan/x")
    assert INPUT_KEY_VERSION  # the version the index must carry is the engine's own


def _manifest(**layer_changes: object) -> bytes:
    layer = {"mediaType": MEDIA_LAYER, "digest": DIGEST, "size": 10, **layer_changes}
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": DIGEST, "size": 5},
            "layers": [layer],
        }
    )


def test_blob_descriptors_of_an_artifact_manifest() -> None:
    assert blob_descriptors(_manifest()) == [(DIGEST, 5), (DIGEST, 10)]


@pytest.mark.parametrize(
    "changes",
    [
        {"digest": "sha256:../../../etc/passwd"},
        {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"},
        {"urls": ["http://elsewhere.invalid/layer"]},
        {"size": -1},
    ],
)
def test_a_manifest_we_would_not_write_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        blob_descriptors(_manifest(**changes))


def test_a_config_bigger_than_a_document_is_refused() -> None:
    """The config is parsed whole, at over 20 times its size in memory."""
    manifest = json.loads(_manifest())
    manifest["config"]["size"] = MAX_DOCUMENT_BYTES + 1
    with pytest.raises(ValueError, match=f"config of {MAX_DOCUMENT_BYTES + 1} bytes"):
        blob_descriptors(canonical_json(manifest))
    manifest["layers"][0]["size"] = MAX_DOCUMENT_BYTES + 1  # a layer is streamed, never parsed
    manifest["config"]["size"] = MAX_DOCUMENT_BYTES
    assert blob_descriptors(canonical_json(manifest))[1] == (DIGEST, MAX_DOCUMENT_BYTES + 1)


def test_a_manifest_nested_past_the_parsers_depth_is_refused() -> None:
    with pytest.raises(ValueError):
        blob_descriptors(b"[" * 5000 + b"]" * 5000)


def test_key_tag_is_the_hex_of_a_full_key() -> None:
    assert key_tag(KEY) == "a" * 64
    with pytest.raises(BottleError, match="not an input key"):
        key_tag("sha256:abc")


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Loopback stand-ins: the registry asks for Basic auth and redirects a manifest request to
    another host name (blob storage, say), which records what it was sent."""

    seen: ClassVar[list[tuple[str, str, str | None]]] = []
    redirect_to = ""

    def do_GET(self) -> None:
        authorization = self.headers.get("Authorization")
        self.seen.append((self.headers["Host"], self.path, authorization))
        if self.path == "/v2/" and authorization is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
        elif self.path.startswith("/v2/team/cache/manifests/"):
            self.send_response(307)
            self.send_header("Location", f"{self.redirect_to}/storage/index")
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_credentials_never_follow_a_redirect_to_another_host() -> None:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder) for _ in range(2)]
    registry, storage = servers
    _Recorder.seen = []
    _Recorder.redirect_to = f"http://localhost:{storage.server_address[1]}"
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        location = parse_location(f"127.0.0.1:{registry.server_address[1]}/team/cache")
        cache = RemoteCache(location, ("builder", "s3cret"))
        assert cache.lookup(KEY) is None  # the storage host answers 404
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    sent = {path: authorization for _, path, authorization in _Recorder.seen}
    assert (
        sent[f"/v2/team/cache/manifests/{'a' * 64}"]
        == "Basic " + base64.b64encode(b"builder:s3cret").decode()
    )
    assert "/storage/index" in sent and sent["/storage/index"] is None


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("localhost:5000/cache", 5000),
        ("127.0.0.1/cache", 80),
        ("[::1]:5001/cache", 5001),
        ("[::1]/cache", 80),
        ("registry.example.com:5000/cache", None),
    ],
)
def test_the_loopback_port_of_a_location(text: str, port: int | None) -> None:
    assert parse_location(text).loopback_port == port


def test_listening_uids_read_the_socket_tables(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
    listening = (
        "   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000  65534\n"
    )
    connected = (
        "   1: 0100007F:1388 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000\n"
    )
    table.write_text(header + listening + connected)
    assert listening_uids(5000, (table, tmp_path / "absent")) == {65534}
    assert listening_uids(5001, (table,)) == set()


# Run as another host user: answers every request for a key index with one of its own making
# (the artifact it names would be its image), and prints the loopback port it took.
SQUATTER = """
import http.server, json, sys
index = sys.argv[1].encode()
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = index if "/manifests/" in self.path else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another host user")
def test_a_loopback_port_another_host_user_holds_is_not_the_shared_cache() -> None:
    """A shared cache on loopback (`localhost:5000/...`) is whatever listens on that port. While
    the person's registry is down, any local account can take the port and answer every key
    with an artifact of its own, the bundle image too, which would then run with the bottle's
    secrets."""
    planted = key_index(KEY, "bundle", DIGEST, 100).decode()
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    squatter = subprocess.Popen(
        [*as_nobody, "/usr/bin/python3", "-c", SQUATTER, planted],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert squatter.stdout is not None
        port = int(squatter.stdout.readline())
        cache = RemoteCache(parse_location(f"127.0.0.1:{port}/team/cache"))
        with pytest.raises(RemoteCacheError, match=f"user {NOBODY}"):
            cache.lookup(KEY)
    finally:
        squatter.kill()
        squatter.wait()
