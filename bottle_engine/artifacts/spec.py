"""What to build (`BuildSpec`) and what a build yields (`Artifact`): plain data, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The contract with Dockerfile authors. The engine puts the extra CA bundle (PEM; an empty file
# when there is none) at this path in the root of the build context and passes the build args
# below. A Dockerfile trusts it with, for example:
#     COPY extra-ca.crt /usr/local/share/ca-certificates/bot-bottle-extra.crt
#     RUN update-ca-certificates
# (`COPY Dockerfile extra-ca.cr[t] /tmp/ca/` also builds without the engine, where it is absent.)
EXTRA_CA_NAME = "extra-ca.crt"
EXTRA_CA_BUILD_ARG = "EXTRA_CA_CERT"  # value: EXTRA_CA_NAME, or "" when no extra CA is given
BASE_IMAGE_BUILD_ARG = "BASE_IMAGE"  # value: BuildSpec.base_image (it wins over build_args)


@dataclass(frozen=True)
class BuildSpec:
    """One image build: a Dockerfile and its context, build args, base image, extra CA bundle.

    `name` names the artifact ("agent", "bundle", ...) and its Docker tag
    ``bot-bottle/<name>:<digest12>``. `labels` end up in the image config (and so in its
    digest). `source_date_epoch` pins the clamp time; None means ``SOURCE_DATE_EPOCH`` from the
    environment, else the newest commit time of the context, else 0.
    """

    name: str
    dockerfile: Path
    context: Path
    build_args: Mapping[str, str]
    base_image: str
    ca_bundle: Path | None
    labels: Mapping[str, str] = field(default_factory=dict)
    source_date_epoch: int | None = None


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


def image_tag_for(name: str, digest: str) -> str:
    return f"bot-bottle/{name}:{digest.removeprefix('sha256:')[:12]}"
