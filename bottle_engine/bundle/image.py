"""What the bundle image is built from: Dockerfile, pinned requirements, the bundle's source.

The engine hands `bundle_build_spec(...)` to the artifact builder. The build context holds only
the parts of `bottle_engine` that run inside the bundle, so an edit to the CLI or the language
server does not change the bundle's input key and does not rebuild it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bottle_engine

BUNDLE_IMAGE_NAME = "bot-bottle/bundle"
EXTRA_CA_NAME = "extra-ca.crt"  # file name of the extra CA bundle inside the build context

_PACKAGE_ROOT = Path(bottle_engine.__file__).resolve().parent
_BUNDLE_DIR = _PACKAGE_ROOT / "bundle"
# The parts of the package the bundle imports; everything else stays out of its input key.
_BUNDLE_SOURCES = ("__init__.py", "errors.py", "py.typed", "bundle", "manifest")


@dataclass(frozen=True)
class BuildSpec:
    """A docker build, as data: the files of its context and its build args.

    `context_files` maps a path inside the build context to the file it is copied from.
    """

    name: str
    dockerfile: str
    context_files: tuple[tuple[str, Path], ...]
    build_args: tuple[tuple[str, str], ...]
    extra_ca_bundle: Path | None

    def write_context(self, dest: Path) -> None:
        """Copy the context into the (empty) directory `dest`."""
        for relative, source in self.context_files:
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        if not (dest / EXTRA_CA_NAME).exists():
            (dest / EXTRA_CA_NAME).write_bytes(b"")


def bundle_build_spec(base_image: str, ca_bundle: Path | None) -> BuildSpec:
    """The bundle image's build: FROM `base_image`, trusting `ca_bundle` (PEM) if given."""
    files: list[tuple[str, Path]] = [
        ("Dockerfile", _BUNDLE_DIR / "Dockerfile"),
        ("requirements.txt", _BUNDLE_DIR / "requirements.txt"),
        ("requirements-proxy.txt", _BUNDLE_DIR / "requirements-proxy.txt"),
    ]
    files.extend(sorted(_package_files()))
    if ca_bundle is not None:
        files.append((EXTRA_CA_NAME, ca_bundle))
    return BuildSpec(
        name="bundle",
        dockerfile="Dockerfile",
        context_files=tuple(files),
        build_args=(("BASE_IMAGE", base_image),),
        extra_ca_bundle=ca_bundle,
    )


def _package_files() -> Iterator[tuple[str, Path]]:
    for name in _BUNDLE_SOURCES:
        source = _PACKAGE_ROOT / name
        candidates = [source] if source.is_file() else sorted(source.rglob("*"))
        for path in candidates:
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                yield f"bottle_engine/{path.relative_to(_PACKAGE_ROOT).as_posix()}", path
