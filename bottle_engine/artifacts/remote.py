"""The shared artifact cache: artifacts pushed to and pulled from an OCI registry by input key.

``BOTTLE_ARTIFACT_REGISTRY=HOST[:PORT]/REPO`` names it. In the registry each artifact is two
manifests: the image manifest, pushed byte for byte under its own digest (so the registry's
digest *is* the artifact digest), and a small **key index** tagged with the input key's hex,
an OCI image index whose annotations carry the input key, the key version and the artifact
name, and whose one descriptor names the image manifest. Both are canonical JSON, so two
machines pushing the same key push the same bytes: concurrent pushes are harmless.

A pull trusts nothing the registry says beyond "this key maps to this digest": the index must
name exactly our key and key version; the image manifest must hash to the digest the index
promises; every blob is streamed into a temp directory of the store, hashed, size-capped and
checked before the layout is renamed into place. Anything else raises `RemoteCacheError`, and
the temp directory goes with it. (Who may push to the repository decides what a key maps to:
give pull-only credentials to machines that need not push. An agent allowed to push may be one
of them, so the bundle image, which holds the secret values, never comes from here:
`BuildSpec.shared_cache`.)

Credentials come from the Docker config (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``, ``auths.<host>.auth``); they are sent only to the registry host (a
redirect elsewhere, e.g. to blob storage, loses the Authorization header) and never printed.
Plain HTTP is used only for loopback registries unless ``BOTTLE_ARTIFACT_REGISTRY_INSECURE=1``.
A loopback registry is whatever listens on its port, which any local account may take while the
person's registry is down: on Linux, one whose port another account holds is refused.

Why our own small client and not a library: the registry HTTP API needed here is six calls the
project already speaks (`registry_api.py`, shared with the ephemeral registry). ``oras``
(oras-py) pushes files as artifacts under manifests it writes itself and does not check blob
digests while pulling; ``python-dxf`` checks digests but re-serializes nothing we need and
brings ``requests`` for what urllib does.
We need the stored manifest bytes pushed unchanged and every byte verified on its way into the
store, which is the part a library would not do for us.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bottle_engine.artifacts.inputs import INPUT_KEY_VERSION
from bottle_engine.artifacts.oci import (
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER,
    MEDIA_MANIFEST,
    canonical_json,
    layout_is_complete,
    read_layout,
    write_layout_index,
)
from bottle_engine.artifacts.registry_api import Absent, RepositoryClient
from bottle_engine.artifacts.spec import Artifact, is_artifact_name, is_digest
from bottle_engine.artifacts.store import PULLED, ArtifactStore
from bottle_engine.errors import BottleError
from bottle_engine.regular_files import load_json
from bottle_engine.settings import ENV_ARTIFACT_REGISTRY, EngineSettings

ANNOTATION_INPUT_KEY = "org.bot-bottle.input-key"
ANNOTATION_KEY_VERSION = "org.bot-bottle.key-version"
ANNOTATION_NAME = "org.bot-bottle.name"
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024  # manifests and indexes; a bigger one is an attack
MAX_TAGS = 10_000
DISK_RESERVE_BYTES = 1 << 30  # a pull leaves this much free on the store's disk
TIMEOUT_S = 60.0
_CHUNK = 1024 * 1024
_KEY_HEX = re.compile(r"^[0-9a-f]{64}$")
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$")
_LOOPBACK = {"localhost", "127.0.0.1", "[::1]"}
SOCKET_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_LISTEN = "0A"  # the state column of a listening socket


class RemoteCacheError(BottleError):
    """The shared cache cannot be used for this artifact (down, auth refused, bad bytes)."""


@dataclass(frozen=True)
class RemoteLocation:
    """Where the shared cache lives: ``host`` (with port) and ``repository``."""

    host: str
    repository: str
    plain_http: bool

    @property
    def base_url(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.host}"

    @property
    def loopback_port(self) -> int | None:
        """The port of a registry on this host's loopback, where any local account may listen;
        None for a registry elsewhere."""
        bare, port = _split_host(self.host)
        if bare not in _LOOPBACK:
            return None
        return port or (80 if self.plain_http else 443)

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


@dataclass(frozen=True)
class RemoteEntry:
    input_key: str
    digest: str
    name: str


def parse_location(text: str, *, insecure: bool = False) -> RemoteLocation:
    """``HOST[:PORT]/REPO`` -> `RemoteLocation`; plain HTTP for loopback hosts or `insecure`."""
    host, _, repository = text.strip().partition("/")
    if not _HOST.match(host) or not _REPOSITORY.match(repository):
        raise BottleError(
            f"{ENV_ARTIFACT_REGISTRY}={text!r} is not HOST[:PORT]/REPOSITORY",
            fix=f"e.g. {ENV_ARTIFACT_REGISTRY}=registry.example.com/team/bot-bottle "
            "(repository in lower case)",
        )
    bare_host, _ = _split_host(host)
    return RemoteLocation(host, repository, plain_http=bare_host in _LOOPBACK or insecure)


def _split_host(host: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` (HOST may be a bracketed IPv6 address) -> (HOST, PORT or None)."""
    bare, colon, port = host.rpartition(":")
    if not colon or host.endswith("]"):
        return host, None
    return bare, int(port)


def listening_uids(port: int, tables: tuple[Path, ...] = SOCKET_TABLES) -> set[int]:
    """The uids holding a TCP socket that listens on `port` (on any address), from Linux's
    socket tables; empty where there are none to read (other systems)."""
    uids = set()
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl local_address rem_address st ... uid
            if fields[3] == _LISTEN and int(fields[1].rpartition(":")[2], 16) == port:
                uids.add(int(fields[7]))
    return uids


def location_of(settings: EngineSettings) -> RemoteLocation | None:
    """The shared cache the settings name (``BOTTLE_ARTIFACT_REGISTRY``), or None."""
    if not settings.artifact_registry:
        return None
    return parse_location(settings.artifact_registry, insecure=settings.artifact_registry_insecure)


def docker_credentials(host: str, config_dir: Path) -> tuple[str, str] | None:
    """(user, password) for `host` from the ``auths`` of the Docker config in `config_dir`
    (``$DOCKER_CONFIG`` or ~/.docker: `EngineSettings.docker_config_dir`), or None."""
    try:
        config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        return None
    for name in (host, f"https://{host}", f"http://{host}"):
        entry = auths.get(name)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return user, password
    return None


def key_tag(input_key: str) -> str:
    """The registry tag of an input key: its hex (a tag cannot hold ``sha256:``)."""
    hex_key = input_key.removeprefix("sha256:")
    if not _KEY_HEX.match(hex_key):
        raise BottleError(
            f"{input_key!r} is not an input key",
            fix="give the full key as printed by `bottle-engine build AGENT --explain`",
        )
    return hex_key


def key_index(input_key: str, name: str, digest: str, manifest_size: int) -> bytes:
    """The canonical key index for an artifact (same bytes on every machine)."""
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": digest, "size": manifest_size}],
            "annotations": {
                ANNOTATION_INPUT_KEY: input_key,
                ANNOTATION_KEY_VERSION: INPUT_KEY_VERSION,
                ANNOTATION_NAME: name,
            },
        }
    )


def read_key_index(body: bytes, input_key: str, where: str) -> tuple[RemoteEntry, int]:
    """Check a key index fetched for `input_key`; return what it promises and the manifest size."""

    def refuse(why: str) -> RemoteCacheError:
        return RemoteCacheError(
            f"the shared cache {where} holds a bad entry for input key {input_key}: {why}",
            fix="remove the tag from the registry, or push this machine's build with "
            "`bottle-engine cache push`",
        )

    try:
        index = load_json(body)
        annotations = index["annotations"]
        (descriptor,) = index["manifests"]
        digest, size = descriptor["digest"], descriptor["size"]
    except (ValueError, KeyError, TypeError) as exc:
        raise refuse("not a bot-bottle key index") from exc
    if index.get("mediaType") != MEDIA_INDEX or not isinstance(annotations, dict):
        raise refuse("not a bot-bottle key index")
    if annotations.get(ANNOTATION_INPUT_KEY) != input_key:
        raise refuse(f"it is annotated with key {annotations.get(ANNOTATION_INPUT_KEY)!r}")
    if annotations.get(ANNOTATION_KEY_VERSION) != INPUT_KEY_VERSION:
        raise refuse(f"key version {annotations.get(ANNOTATION_KEY_VERSION)!r}, not ours")
    name = annotations.get(ANNOTATION_NAME)
    if not is_artifact_name(name):
        raise refuse("its artifact name is not a valid image name")
    if not is_digest(digest):
        raise refuse("its manifest digest is not sha256:<64 hex>")
    if not isinstance(size, int) or not 0 < size <= MAX_DOCUMENT_BYTES:
        raise refuse("its manifest size is out of range")
    return RemoteEntry(input_key, digest, name), size


def blob_descriptors(manifest_body: bytes) -> list[tuple[str, int]]:
    """(digest, size) of the config and each layer of an artifact manifest; refuses anything
    our builder does not write (other media types, foreign layers, malformed digests, a config
    bigger than a document)."""
    manifest = load_json(manifest_body)
    if manifest.get("mediaType") != MEDIA_MANIFEST:
        raise ValueError(f"media type {manifest.get('mediaType')!r}")
    config, layers = manifest["config"], manifest["layers"]
    if config.get("mediaType") != MEDIA_CONFIG or not isinstance(layers, list):
        raise ValueError("not an image manifest of ours")
    found = []
    for descriptor in [config, *layers]:
        digest, size = descriptor.get("digest"), descriptor.get("size")
        if descriptor is not config and descriptor.get("mediaType") != MEDIA_LAYER:
            raise ValueError(f"layer media type {descriptor.get('mediaType')!r}")
        if "urls" in descriptor:
            raise ValueError("foreign layer URLs")
        if not is_digest(digest):
            raise ValueError(f"digest {digest!r}")
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"size {size!r}")
        if descriptor is config and size > MAX_DOCUMENT_BYTES:
            # The config is read and parsed whole (`read_layout`), and JSON of empty objects
            # takes over 20 times its size in memory: a pusher's config of a gigabyte would put
            # the machine out of memory. Docker's are a few kilobytes.
            raise ValueError(f"a config of {size} bytes, more than {MAX_DOCUMENT_BYTES}")
        found.append((digest, size))
    return found


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry the Authorization header to another host."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != req.host:
            new.remove_header("Authorization")
        return new


class RemoteCache(RepositoryClient):
    """One shared cache repository; every failure raises `RemoteCacheError`. Whatever registry
    the person runs is taken as it answers (no check of the spec's status codes)."""

    def __init__(
        self, location: RemoteLocation, credentials: tuple[str, str] | None = None
    ) -> None:
        handlers: list[Any] = [_SameHostRedirects()]
        if location.plain_http:
            handlers.append(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        super().__init__(
            location.base_url,
            location.repository,
            timeout=TIMEOUT_S,
            opener=urllib.request.build_opener(*handlers),
        )
        self.location = location
        self._credentials = credentials
        self._authorization: str | None = None
        self._authorized = False

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> RemoteCache | None:
        """The shared cache the settings name, with Docker's login for its host; or None."""
        location = location_of(settings)
        if location is None:
            return None
        return cls(location, docker_credentials(location.host, settings.docker_config_dir))

    # -- reading -------------------------------------------------------------------------------

    def lookup(self, input_key: str) -> tuple[RemoteEntry, int] | None:
        """What the registry promises for `input_key` (entry, manifest size), or None."""
        tag = key_tag(input_key)
        try:
            body = self._get_document(f"manifests/{tag}", MEDIA_INDEX, f"look up key {tag[:12]}")
        except Absent:
            return None
        return read_key_index(body, input_key, str(self.location))

    def pull(
        self, input_key: str, store: ArtifactStore, *, expected_name: str | None = None
    ) -> Artifact | None:
        """Fetch and verify the artifact for `input_key` into `store`; None when absent.

        Nothing enters the store unless every byte matched the digest the key index promises.
        """
        found = self.lookup(input_key)
        if found is None:
            return None
        entry, manifest_size = found
        if expected_name is not None and entry.name != expected_name:
            raise RemoteCacheError(
                f"the shared cache {self.location} maps input key {input_key} to a "
                f"{entry.name!r} artifact, not {expected_name!r}",
                fix="remove the tag from the registry; the key covers the name, so it was "
                "pushed by something other than bot-bottle",
            )
        with store.new_layout() as work:
            layout = work / "layout"
            blobs = layout / "blobs" / "sha256"
            blobs.mkdir(parents=True)
            self._fetch_blob(
                f"manifests/{entry.digest}", entry.digest, manifest_size, blobs, MEDIA_MANIFEST
            )
            manifest_body = (blobs / entry.digest.removeprefix("sha256:")).read_bytes()
            try:
                descriptors = blob_descriptors(manifest_body)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise RemoteCacheError(
                    f"the shared cache {self.location} serves manifest {entry.digest} for "
                    f"input key {input_key}, which is not a bot-bottle artifact: {exc}",
                    fix="remove the tag from the registry",
                ) from exc
            claimed = sum(size for _, size in descriptors)
            free = shutil.disk_usage(blobs).free
            if claimed > free - DISK_RESERVE_BYTES:
                # Each blob is capped at its declared size; this caps the declared sizes.
                raise RemoteCacheError(
                    f"the artifact {entry.digest} in {self.location} declares {claimed} bytes; "
                    f"the store has {free} free: not fetched",
                    fix="free disk space (`bottle-engine cache gc`), or remove the tag if the "
                    "size is wrong",
                )
            for digest, size in descriptors:
                self._fetch_blob(f"blobs/{digest}", digest, size, blobs, None)
            write_layout_index(layout, entry.digest, manifest_size)
            if not layout_is_complete(layout, entry.digest):
                raise RemoteCacheError(
                    f"the artifact {entry.digest} pulled from {self.location} is incomplete",
                    fix="push it again from a machine that has it (`bottle-engine cache push`)",
                )
            return store.put(input_key, entry.name, entry.digest, layout, origin=PULLED)

    def entries(self) -> list[RemoteEntry]:
        """Every key index in the repository that is valid for this engine's key version."""
        try:
            body = self._get_document("tags/list", "application/json", "list tags")
        except Absent:
            return []
        try:
            listing = load_json(body)
        except ValueError:
            listing = None
        # The registry's to write: `{"tags": 5}` once raised TypeError through `cache ls`.
        tags = (listing.get("tags") or []) if isinstance(listing, dict) else None
        if not isinstance(tags, list):
            raise RemoteCacheError(
                f"the shared cache {self.location} answered the tag list with no tag list",
                fix="check that it is an OCI distribution registry",
            )
        found = []
        for tag in tags[:MAX_TAGS]:
            if isinstance(tag, str) and _KEY_HEX.match(tag):
                try:
                    hit = self.lookup("sha256:" + tag)
                except RemoteCacheError:
                    continue  # another key version, or not ours: not listed
                if hit is not None:
                    found.append(hit[0])
        return found

    # -- writing -------------------------------------------------------------------------------

    def push(self, artifact: Artifact, name: str) -> str:
        """Push `artifact` tagged by its input key; returns "pushed", "present" or a note
        naming the other digest the registry already holds for the key (kept: first wins)."""
        existing = self.lookup(artifact.input_key)
        if existing is not None:
            if existing[0].digest == artifact.digest:
                return "present"
            return f"kept {existing[0].digest} (pushed first for this key)"
        image = read_layout(artifact.layout_dir)
        for digest in [image.config_digest, *image.layer_digests]:
            self.push_blob(image.blob(digest), digest)
        manifest_body = image.blob(artifact.digest).read_bytes()
        stored = self.put_manifest(
            artifact.digest,
            manifest_body,
            MEDIA_MANIFEST,
            doing=f"push manifest {artifact.digest[:19]}",
        )
        if stored not in (None, artifact.digest):
            raise RemoteCacheError(
                f"the shared cache {self.location} stored manifest {artifact.digest} as {stored}",
                fix="use a registry that keeps manifests byte for byte (OCI distribution)",
            )
        index = key_index(artifact.input_key, name, artifact.digest, len(manifest_body))
        tag = key_tag(artifact.input_key)
        self.put_manifest(tag, index, MEDIA_INDEX, doing=f"tag key {tag[:12]}")
        return "pushed"

    # -- HTTP ----------------------------------------------------------------------------------

    def _before(self, doing: str) -> None:
        """A loopback registry is whatever listens on its port: while the person's is down, any
        local account may take the port and answer every key with an image of its own. Only
        the engine's user and root (Docker's port proxy) are taken for the registry."""
        port = self.location.loopback_port
        if port is None:
            return
        strangers = listening_uids(port) - {0, os.geteuid()}
        if strangers:
            raise RemoteCacheError(
                f"{doing}: port {port} of the shared cache {self.location} is held by host "
                f"user {', '.join(map(str, sorted(strangers)))}, not this one or root: not used",
                fix=f"stop what that account runs on port {port} and start the registry again, "
                "or use a registry on another host over HTTPS",
            )

    def _get_document(self, path: str, accept: str, doing: str) -> bytes:
        with self.request("GET", path, None, {"Accept": accept}, doing=doing) as response:
            body: bytes = response.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise RemoteCacheError(
                f"{doing}: the shared cache {self.location} answered more than "
                f"{MAX_DOCUMENT_BYTES} bytes",
                fix="check the registry; bot-bottle documents are a few kilobytes",
            )
        return body

    def _fetch_blob(
        self, path: str, digest: str, size: int, blobs: Path, accept: str | None
    ) -> None:
        """Stream `path` into ``blobs/<hex>``, refusing more than `size` bytes or another hash."""
        target = blobs / digest.removeprefix("sha256:")
        if target.is_file():
            return  # already fetched and checked (config and a layer can share bytes)
        partial = blobs / f".partial-{digest.removeprefix('sha256:')}"
        headers = {"Accept": accept} if accept else {}
        hasher = hashlib.sha256()
        received = 0
        try:
            with (
                self.request("GET", path, None, headers, doing=f"fetch {digest[:19]}") as answer,
                partial.open("wb") as out,
            ):
                while chunk := answer.read(min(_CHUNK, size - received + 1)):
                    received += len(chunk)
                    if received > size:
                        break
                    hasher.update(chunk)
                    out.write(chunk)
        except Absent as exc:
            raise RemoteCacheError(
                f"the shared cache {self.location} lacks {digest}, which its entry names",
                fix="push the artifact again (`bottle-engine cache push`); nothing was stored",
            ) from exc
        except OSError as exc:
            raise RemoteCacheError(
                f"fetch {digest}: the transfer from {self.location} broke off: {exc}",
                fix="try again; nothing was stored",
            ) from exc
        actual = "sha256:" + hasher.hexdigest()
        if received != size or actual != digest:
            partial.unlink(missing_ok=True)
            got = f"more than {size} bytes" if received > size else f"{received} bytes, {actual}"
            raise RemoteCacheError(
                f"the shared cache {self.location} served {got} for {digest} "
                f"({size} bytes): refused, nothing was stored",
                fix="the registry's copy is damaged or was tampered with: delete the tag "
                "there and push the artifact again from a trusted machine",
            )
        partial.rename(target)

    def _headers(self) -> dict[str, str]:
        if not self._authorized:
            self._authorize()
        return {"Authorization": self._authorization} if self._authorization else {}

    def _answered(self, exc: urllib.error.HTTPError, doing: str) -> RemoteCacheError:
        if exc.code in (401, 403):
            return self._auth_error(exc.code, doing)
        return RemoteCacheError(
            f"{doing}: the shared cache {self.location} answered {exc.code} {exc.reason}",
            fix="check the registry's log; the build goes on without the shared cache",
        )

    def _upload_elsewhere(self, digest: str) -> RemoteCacheError:
        return RemoteCacheError(
            f"the shared cache {self.location} sent the upload of {digest} to another host",
            fix="use a registry that accepts uploads on its own host",
        )

    def _authorize(self) -> None:
        """Probe ``/v2/`` and, on a challenge, get the Authorization header to send (probed
        again on the next request if this one fails)."""
        probe = urllib.request.Request(f"{self.location.base_url}/v2/", method="GET")
        try:
            self._opener.open(probe, timeout=TIMEOUT_S).close()
            self._authorized = True
            return
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code != 401:
                raise RemoteCacheError(
                    f"the shared cache {self.location} answered /v2/ with {exc.code}",
                    fix="check that it is an OCI distribution registry",
                ) from exc
            challenge = exc.headers.get("WWW-Authenticate", "")
        except OSError as exc:
            raise self._unreachable(exc, "connect") from exc
        if self._credentials is None:
            raise self._auth_error(401, "connect")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            self._authorization = "Basic " + _basic(self._credentials)
        elif scheme.lower() == "bearer":
            self._authorization = "Bearer " + self._bearer_token(_challenge_params(params))
        else:
            raise RemoteCacheError(
                f"the shared cache {self.location} asks for {scheme or 'an unnamed'} "
                "authentication, which bot-bottle does not speak",
                fix="use a registry with Basic or token (Bearer) authentication",
            )
        self._authorized = True

    def _bearer_token(self, params: dict[str, str]) -> str:
        realm = params.get("realm", "")
        if not realm.startswith("https://") and not self.location.plain_http:
            raise RemoteCacheError(
                f"the shared cache {self.location} sends credentials to a non-HTTPS token "
                f"service ({realm!r}): refused",
                fix="configure the registry's token realm with https://",
            )
        query = {"scope": f"repository:{self.location.repository}:pull,push"}
        if "service" in params:
            query["service"] = params["service"]
        assert self._credentials is not None
        request = urllib.request.Request(
            f"{realm}?{urllib.parse.urlencode(query)}",
            headers={"Authorization": "Basic " + _basic(self._credentials)},
        )
        try:
            with self._opener.open(request, timeout=TIMEOUT_S) as answer:
                document = load_json(answer.read(MAX_DOCUMENT_BYTES))
        except urllib.error.HTTPError as exc:
            exc.close()
            raise self._auth_error(exc.code, "get a token") from exc
        except (OSError, ValueError) as exc:
            raise self._unreachable(exc, "get a token") from exc
        # The token service's to write: a JSON list had no `.get`.
        token = (
            (document.get("token") or document.get("access_token"))
            if isinstance(document, dict)
            else None
        )
        if not isinstance(token, str):
            raise self._auth_error(401, "get a token")
        return token

    def _auth_error(self, code: int, doing: str) -> RemoteCacheError:
        have = "the credentials" if self._credentials else "no credentials"
        return RemoteCacheError(
            f"{doing}: the shared cache {self.location} refused access ({code}) with {have} "
            f"from the Docker config for {self.location.host}",
            fix=f"`docker login {self.location.host}` with an account that may read (and, to "
            f"push, write) {self.location.repository}",
        )

    def _unreachable(self, exc: Exception, doing: str) -> RemoteCacheError:
        reason = getattr(exc, "reason", exc)
        return RemoteCacheError(
            f"{doing}: cannot reach the shared cache {self.location} "
            f"({self.location.base_url}): {reason}",
            fix=f"start the registry, or unset {ENV_ARTIFACT_REGISTRY} to build without it",
        )


def _basic(credentials: tuple[str, str]) -> str:
    return base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()


def _challenge_params(text: str) -> dict[str, str]:
    return {key.lower(): value for key, value in re.findall(r'(\w+)="([^"]*)"', text)}
