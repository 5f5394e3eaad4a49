"""What to build (`BuildSpec`) and what a build yields (`Artifact`): plain data, no I/O."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeGuard

# The contract with Dockerfile authors. The engine puts the extra CA bundle (PEM; an empty file
# when there is none) at this path in the root of the build context and passes the build args
# below. A Dockerfile trusts it with, for example:
#     COPY extra-ca.crt /usr/local/share/ca-certificates/bot-bottle-extra.crt
#     RUN update-ca-certificates
# (`COPY Dockerfile extra-ca.cr[t] /tmp/ca/` also builds without the engine, where it is absent.)
EXTRA_CA_NAME = "extra-ca.crt"
EXTRA_CA_BUILD_ARG = "EXTRA_CA_CERT"  # value: EXTRA_CA_NAME, or "" when no extra CA is given
BASE_IMAGE_BUILD_ARG = "BASE_IMAGE"  # value: BuildSpec.base_image (it wins over build_args)


class ContextCheck(Protocol):
    """What looks at a build's inputs as they are read for the input key (the context read
    once): a launch refuses an agent image whose context holds a real secret value
    (`context_values.py`). Each method raises a `BottleError` to refuse."""

    def build_args(self, build_args: Mapping[str, str]) -> None:
        """The build args given."""

    def entry(self, path: str, data: bytes) -> None:
        """One context entry as Docker is sent it: a file's content, a link's target, b""
        for a directory."""

    def done(self, files: Sequence[str], tar_of: Callable[[Sequence[str]], bytes]) -> str | None:
        """Every entry was seen; `files` are the file entries, `tar_of` gives some of them as
        a tar (read again, and checked to be what was hashed). Returns a warning line for the
        person (what it could not look at), or None."""


@dataclass(frozen=True)
class BuildSpec:
    """One image build: a Dockerfile and its context, build args, base image, extra CA bundle.

    `name` names the artifact ("agent", "bundle", ...) and its Docker tag
    ``bot-bottle/<name>:<digest12>``. `labels` end up in the image config (and so in its
    digest). `source_date_epoch` pins the clamp time; None means ``SOURCE_DATE_EPOCH`` from the
    environment, else the newest commit time of the context, else 0. `withheld`: host files
    left out of the context under any name (`file_ids`), whatever `.dockerignore` says;
    `check` looks at what the context holds (not part of the key). `shared_cache`: False keeps
    the artifact out of the shared cache (`remote.py`) both ways, for an image that must be
    built by the machine that runs it: whoever may push to the registry decides what a key
    maps to, and that may be an agent (the bundle's spec). It is never pushed either: no launch
    would pull it, and uploading it costs a full image for nothing.
    """

    name: str
    dockerfile: Path
    context: Path
    build_args: Mapping[str, str]
    base_image: str
    ca_bundle: Path | None
    labels: Mapping[str, str] = field(default_factory=dict)
    source_date_epoch: int | None = None
    withheld: tuple[Path, ...] = ()
    check: ContextCheck | None = field(default=None, compare=False, repr=False)
    shared_cache: bool = True


@dataclass(frozen=True)
class Artifact:
    """A normalized image in the store: same `input_key`, same `digest`, on any machine."""

    input_key: str
    digest: str  # "sha256:<hex>" of the OCI image manifest
    layout_dir: Path  # an OCI image layout directory inside the store
    image_tag: str  # "bot-bottle/<name>:<digest12>" once loaded into Docker

    @property
    def name(self) -> str:
        return self.image_tag.split("/", 1)[1].split(":", 1)[0]


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def is_digest(value: object) -> TypeGuard[str]:
    """`value` is a digest as the store and the shared cache write one ("sha256:<64 hex>").

    Input keys and digests name files and directories in the store and tags in Docker: one
    read back from a file or a registry is used only once it has this shape."""
    return isinstance(value, str) and _DIGEST.match(value) is not None


def is_artifact_name(value: object) -> TypeGuard[str]:
    """`value` is an artifact name as specs give them (`BuildSpec.name`): it becomes part of an
    image tag."""
    return isinstance(value, str) and _NAME.match(value) is not None


def image_tag_for(name: str, digest: str) -> str:
    return f"bot-bottle/{name}:{digest.removeprefix('sha256:')[:12]}"
