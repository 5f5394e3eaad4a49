"""`bottle.toml`: finding, loading (with source positions), validating, and the typed model.

loaded = load_manifest_file(find_manifest())
for problem in loaded.problems: print(problem.to_text())
manifest = loaded.require()          # BottleError when there are errors
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from bottle_engine.errors import BottleError
from bottle_engine.manifest.model import Agent, Bottle, Manifest, build_model
from bottle_engine.manifest.problems import Problem, Severity
from bottle_engine.manifest.source import ParsedToml, Position, Span, parse_toml
from bottle_engine.manifest.validate import validate

MANIFEST_NAME = "bottle.toml"
# A real manifest is a few KiB. Parsing and validating cost about 7 s and 1 GiB of memory per
# 8 MiB, and an agent's branch may hold a bottle.toml of any size, or a link to /dev/zero: the
# editor would pay it on every keystroke, and reading the whole file never ends.
MAX_MANIFEST_BYTES = 256 * 1024

__all__ = [
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "Agent",
    "Bottle",
    "LoadedManifest",
    "Manifest",
    "Problem",
    "Severity",
    "find_manifest",
    "load_manifest",
    "load_manifest_file",
    "load_manifest_text",
]


@dataclass
class LoadedManifest:
    """A manifest as read: its text, positions, problems, and the model when it is valid."""

    path: Path
    parsed: ParsedToml
    problems: list[Problem] = field(default_factory=list)
    manifest: Manifest | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def require(self) -> Manifest:
        """The model, or a `BottleError` listing every error."""
        if self.manifest is None or self.errors:
            lines = "\n".join(p.to_text() for p in self.errors)
            raise BottleError(
                f"{self.path} has {len(self.errors)} error(s):\n{lines}",
                fix=f"correct them, then run `bottle-engine validate -f {self.path}`",
            )
        return self.manifest


def load_manifest_text(text: str, path: Path) -> LoadedManifest:
    """Validate `text` as the manifest at `path` (which need not exist; it anchors paths).

    Text over `MAX_MANIFEST_BYTES` is not parsed: one problem (BB002) says so."""
    if too_large(text):
        return _too_large(path)
    parsed = parse_toml(text)
    problems = [replace(p, file=path) for p in validate(parsed, path)]
    loaded = LoadedManifest(path=path, parsed=parsed, problems=problems)
    if not loaded.errors:
        loaded.manifest = build_model(path, parsed.data)
    return loaded


def too_large(text: str) -> bool:
    """More than `MAX_MANIFEST_BYTES` in UTF-8 (the length alone decides most texts)."""
    if len(text) > MAX_MANIFEST_BYTES:
        return True
    return len(text.encode("utf-8", "surrogatepass")) > MAX_MANIFEST_BYTES


def _too_large(path: Path) -> LoadedManifest:
    """The manifest as unread: no data, one problem at its start."""
    at = Position(0, 0)
    problem = Problem(
        "BB002",
        f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes, more than bot-bottle reads; "
        "a bottle.toml holds agents and bottles only (long prompts go in a prompt_file)",
        Span(at, at),
        file=path,
    )
    unread = ParsedToml(text="", syntax_error="too large", syntax_error_at=at)
    return LoadedManifest(path=path, parsed=unread, problems=[problem])


def read_manifest_text(path: Path) -> str | None:
    """The file's text, or None when it holds more than `MAX_MANIFEST_BYTES` (only that much
    is read). `OSError` and `UnicodeDecodeError` as reading raises them.

    Only a regular file is read: a committed link may lead to a device that never ends, or to
    `/dev/stdin`, which in the language server is the editor's messages; reading it blocked the
    server for good. Opening does not wait for a FIFO's writer either (`O_NONBLOCK`)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = stream.read(MAX_MANIFEST_BYTES + 1)
    return None if len(data) > MAX_MANIFEST_BYTES else data.decode("utf-8")


def load_manifest_file(path: Path) -> LoadedManifest:
    try:
        text = read_manifest_text(path)
    except FileNotFoundError as exc:
        raise BottleError(
            f"{path}: no such manifest", fix="check the path, or run `bottle-engine init`"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BottleError(f"{path}: cannot read the manifest: {exc}") from exc
    if text is None:
        return _too_large(path.resolve())
    loaded = load_manifest_text(text, path.resolve())
    if loaded.manifest is not None:
        loaded.manifest = replace(loaded.manifest, found_at=Path(os.path.abspath(path)))
    return loaded


def find_manifest(explicit: str | Path | None = None, start: Path | None = None) -> Path:
    """`explicit` if given, else bottle.toml in `start` (default: cwd) or its nearest parent."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise BottleError(f"{path}: no such manifest", fix="check the -f/--file path")
        return Path(os.path.abspath(path))  # links kept: `load_manifest_file` resolves
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / MANIFEST_NAME
        if candidate.is_file():
            return candidate
    raise BottleError(
        f"no {MANIFEST_NAME} in {here} or any parent directory",
        fix="run `bottle-engine init` to write one, or pass -f PATH",
    )


def load_manifest(explicit: str | Path | None = None) -> Manifest:
    """Find, load and validate; a `BottleError` when anything is wrong."""
    return load_manifest_file(find_manifest(explicit)).require()
