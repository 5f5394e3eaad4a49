"""Tiny OCI image layouts made by hand, for packing tests that need no image build.

Each layout holds one gzip layer with a marker file, so two markers give two different
artifact digests (two concurrent packs never share a cache entry or a registry tag).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from bottle_engine.artifacts.spec import Artifact

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


LayoutArtifact = Artifact


def _write_blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}"


def _layer(marker: str, size: int, random_payload: bool) -> bytes:
    payload = (
        os.urandom(size)
        if random_payload
        else hashlib.sha256(marker.encode()).digest() * (size // 32)
    )
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in (
            ("etc/bottle-marker", marker.encode()),
            ("opt/payload.bin", payload),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def make_layout(
    root: Path, marker: str, *, payload_bytes: int = 4096, random_payload: bool = False
) -> LayoutArtifact:
    """An OCI layout under `root` whose single layer carries `marker` (and a payload file;
    random bytes make it incompressible, for benchmarks)."""
    layout = root / f"layout-{marker}"
    layer = _layer(marker, payload_bytes, random_payload)
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    layer_digest = _write_blob(layout, layer)
    config_digest = _write_blob(layout, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    manifest_digest = _write_blob(layout, manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest)}
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return Artifact(
        input_key=f"test-{marker}",
        digest=manifest_digest,
        layout_dir=layout,
        image_tag=f"bot-bottle/test:{manifest_digest[7:19]}",
    )


def write_oci_tar(layout_dir: Path, dest: Path) -> None:
    """The layout as an OCI archive (a tar of the layout directory)."""
    with tarfile.open(dest, "w") as tar:
        for path in sorted(layout_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout_dir)), recursive=False)
