"""The bundle's pinned Python requirements, each with the sha256 of every file of its release.

The bundle holds every bottle's real secrets, and its build trusts an extra CA (a TLS-inspecting
proxy): without hashes, whoever can change bytes on the way from PyPI chooses code that runs in
it. Its Dockerfile installs with `--require-hashes`; `scripts/update-bundle-hashes` rewrites
the hashes from PyPI, and a test runs `problems` over the committed files. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bottle_engine.artifacts.bundle_image import BUNDLE_DIR, REQUIREMENT_NAMES

REQUIREMENT_FILES = tuple(BUNDLE_DIR / name for name in REQUIREMENT_NAMES)
_PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.!+_-]+)")
_HASH = re.compile(r"--hash=sha256:(?P<digest>[0-9a-f]{64})")
_SDIST_SUFFIXES = (".tar.gz", ".tar.bz2", ".zip")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)

    def render(self) -> str:
        lines = [f"{self.name}=={self.version}"] + [f"    --hash=sha256:{h}" for h in self.hashes]
        return " \\\n".join(lines) + "\n"


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each line, backslash continuations joined as pip joins them."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        start, before = pending or (number, "")
        if line.endswith("\\"):
            pending = (start, before + line[:-1] + " ")
            continue
        pending = None
        joined.append((start, before + line))
    if pending:
        joined.append(pending)
    return joined


def _is_requirement(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def parse_pin(line: str) -> Pin | None:
    """The pin a requirement line states, or None unless it is exactly NAME==VERSION followed
    by sha256 hashes only (no markers, extras, URLs or index options)."""
    words = line.split()
    pin = _PIN.fullmatch(words[0]) if words else None
    hashes = [_HASH.fullmatch(word) for word in words[1:]]
    if pin is None or not hashes or not all(hashes):
        return None
    return Pin(pin["name"], pin["version"], tuple(h["digest"] for h in hashes if h))


def problems(text: str, source: str) -> list[str]:
    """Every requirement line of `text` that is not a hashed pin, as `source:LINE: ...`."""
    return [
        f"{source}:{number}: {line.split()[0]!r} is not `NAME==VERSION --hash=sha256:...`"
        " (run scripts/update-bundle-hashes)"
        for number, line in logical_lines(text)
        if _is_requirement(line) and parse_pin(line) is None
    ]


def pins(text: str, source: str) -> list[Pin]:
    """The pins of `text`, hashes or not; raises ValueError naming a line that is no pin."""
    found = []
    for number, line in logical_lines(text):
        if not _is_requirement(line):
            continue
        pin = _PIN.fullmatch(line.split()[0])
        if pin is None:
            raise ValueError(f"{source}:{number}: {line.split()[0]!r} is not NAME==VERSION")
        found.append(Pin(pin["name"], pin["version"]))
    return found


def rehash(text: str, hashes: Mapping[tuple[str, str], tuple[str, ...]]) -> str:
    """`text` with each pin's hashes replaced by `hashes[(name, version)]`; comments kept."""
    out = []
    for number, line in logical_lines(text):
        if not _is_requirement(line):
            out.append(line + "\n")
            continue
        (pin,) = pins(line, f"line {number}")
        out.append(Pin(pin.name, pin.version, hashes[pin.key]).render())
    return "".join(out)


def release_file_version(filename: str) -> str | None:
    """The version a wheel or sdist file name states (lower case), None for other files."""
    if filename.endswith(".whl"):
        return filename.split("-")[1].lower()
    for suffix in _SDIST_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)].rpartition("-")[2].lower()
    return None
