"""The OCI distribution HTTP API, client side: the calls both the ephemeral registry
(`registry.py`) and the shared cache (`remote.py`) make to one repository, over urllib.

`RepositoryClient` frames a request (a path under ``/v2/<repository>/``, or a whole URL such
as an upload location), pushes a blob in one piece (HEAD, POST, PUT) and a manifest byte for
byte. What an error says is its subclass's: each names its own registry and the way out, so the
person reads the same messages as before the two shared this code.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bottle_engine.artifacts.oci import blob_upload_completion
from bottle_engine.errors import BottleError

_READS = ("GET", "HEAD")


class Absent(Exception):
    """A read (GET, HEAD) answered 404: what absence means is the caller's to decide."""


class RepositoryClient:
    """One repository of an OCI distribution registry at `base_url` (``scheme://host[:port]``).

    A subclass says what a failure means to the person (`_answered`, `_unreachable`,
    `_unexpected`, `_upload_elsewhere`), may add headers to every request (`_headers`) and
    check something before each (`_before`).
    """

    def __init__(
        self,
        base_url: str,
        repository: str,
        *,
        timeout: float,
        opener: urllib.request.OpenerDirector | None = None,
    ) -> None:
        self.base_url = base_url
        self.repository = repository
        self._timeout = timeout
        self._opener = opener or urllib.request.build_opener()

    # -- what a subclass says ----------------------------------------------------------------

    def _before(self, doing: str) -> None:
        """Called before each request is sent; raises to stop it."""

    def _headers(self) -> dict[str, str]:
        """Headers every request carries (e.g. Authorization)."""
        return {}

    def _answered(self, exc: urllib.error.HTTPError, doing: str) -> BottleError:
        raise NotImplementedError

    def _unreachable(self, exc: OSError, doing: str) -> BottleError:
        raise NotImplementedError

    def _unexpected(self, status: int, expected: int, doing: str) -> BottleError | None:
        """An answer other than the spec's status: an error, or None to take it as it is."""
        return None

    def _upload_elsewhere(self, digest: str) -> BottleError:
        raise NotImplementedError

    # -- the API -------------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        if "://" in path_or_url:
            return path_or_url
        return f"{self.base_url}/v2/{self.repository}/{path_or_url}"

    def request(
        self,
        method: str,
        path_or_url: str,
        body: Any,
        headers: dict[str, str],
        *,
        doing: str,
        expect: int | None = None,
    ) -> Any:
        """The open response (the caller closes it); `Absent` when a read answers 404."""
        self._before(doing)
        all_headers = {**headers, **self._headers()}
        request = urllib.request.Request(
            self.url(path_or_url), data=body, headers=all_headers, method=method
        )
        try:
            response = self._opener.open(request, timeout=self._timeout)
        except urllib.error.HTTPError as exc:
            try:
                if exc.code == 404 and method in _READS:
                    raise Absent from exc
                raise self._answered(exc, doing) from exc
            finally:
                exc.close()
        except OSError as exc:
            raise self._unreachable(exc, doing) from exc
        if expect is not None and response.status != expect:
            problem = self._unexpected(response.status, expect, doing)
            if problem is not None:
                response.close()
                raise problem
        return response

    def push_blob(self, path: Path, digest: str) -> None:
        """Upload the blob stored at `path` unless the repository has it already."""
        doing = f"push blob {digest[:19]}"
        try:
            self.request("HEAD", f"blobs/{digest}", None, {}, doing=doing).close()
            return  # already there (a concurrent push, or layers shared between images)
        except Absent:
            pass
        with self.request("POST", "blobs/uploads/", b"", {}, doing=doing, expect=202) as started:
            location = urllib.parse.urljoin(self.base_url, started.headers["Location"])
        if urllib.parse.urlsplit(location).netloc != urllib.parse.urlsplit(self.base_url).netloc:
            raise self._upload_elsewhere(digest)
        url, headers = blob_upload_completion(location, digest, path)
        with path.open("rb") as stream:
            self.request("PUT", url, stream, headers, doing=doing, expect=201).close()

    def put_manifest(
        self, reference: str, body: bytes, media_type: str, *, doing: str
    ) -> str | None:
        """Store `body` as is under `reference` (a tag or its digest); the digest the registry
        says it stored it under (``Docker-Content-Digest``), if it says."""
        with self.request(
            "PUT", f"manifests/{reference}", body, {"Content-Type": media_type}, doing=doing
        ) as answer:
            stored: str | None = answer.headers.get("Docker-Content-Digest")
        return stored
