"""The Nix-free reproducible artifact builder.

Same inputs (Dockerfile, filtered context, build args, base image, extra CA bundle) give the same
input key; a stored artifact for that key replaces the build. Built images are normalized into
OCI layouts whose manifest digest (the artifact digest) is the same on every machine.

    artifact = ensure_artifact(client, BuildSpec(...))
    artifact.image_tag   # loaded into Docker
    artifact.layout_dir  # the OCI layout, e.g. for `write_image_archive`
"""

from bottle_engine.artifacts.base import (
    DEFAULT_BASE_TAG,
    ensure_base_image,
    resolve_base_image,
)
from bottle_engine.artifacts.builder import (
    BuildResult,
    VerifyResult,
    build,
    ensure_artifact,
    make_runnable,
    verify_artifact,
    write_image_archive,
)
from bottle_engine.artifacts.inputs import (
    BuildInputs,
    compute_input_key,
    prepare_inputs,
    resolve_ca_bundle,
)
from bottle_engine.artifacts.spec import (
    EXTRA_CA_BUILD_ARG,
    EXTRA_CA_NAME,
    Artifact,
    BuildSpec,
)
from bottle_engine.artifacts.store import ArtifactStore, StoreEntry

__all__ = [
    "DEFAULT_BASE_TAG",
    "EXTRA_CA_BUILD_ARG",
    "EXTRA_CA_NAME",
    "Artifact",
    "ArtifactStore",
    "BuildInputs",
    "BuildResult",
    "BuildSpec",
    "StoreEntry",
    "VerifyResult",
    "build",
    "compute_input_key",
    "ensure_artifact",
    "ensure_base_image",
    "make_runnable",
    "prepare_inputs",
    "resolve_base_image",
    "resolve_ca_bundle",
    "verify_artifact",
    "write_image_archive",
]
