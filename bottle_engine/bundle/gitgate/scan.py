"""Secret scanning of what a push stores: every new blob as bytes, every commit and tag object,
every path and ref name. Pure: bytes and names in, findings out; `objects.py` reads them from git.

What is looked at, for each blob:
* the bytes as stored, as text (UTF-8, undecodable bytes replaced, NUL bytes as line breaks, so
  a file with one NUL byte is still read line by line);
* the runs of ASCII text stored as UTF-16 or UTF-32 (little and big endian), as ``strings -el``
  finds them, wherever they are in the blob;
* the content of every gzip, bzip2 or xz stream wherever its magic number stands in the blob (a
  tar of .gz files, a payload past a script), and of a zlib or lzma stream that starts it,
  inflated up to the blob bound (inflating further is refused, not skipped), by `inflate`,
  which the launch shares;
* likewise each member of a zip archive anywhere in the blob, found by walking every local
  entry header, not by the central directory, which may leave entries out that tools reading
  the entries in order (``jar``, libarchive) still extract, each object of a git pack (a
  bundle's too), deltas made on their bases, each zlib stream after a PDF's ``stream``
  keyword (FlateDecode), and a PNG's compressed text chunks;
* what those hold is read the same way, `inflate.MAX_NESTING` levels deep; a stream deeper
  than that, or one the bundle has no decompressor for (zstd and its legacy frames, lz4 and
  its legacy frame, 7z, rar, lzip, and compress, pack and LZH, which gunzip reads), is
  refused, not skipped; for that, the header after its magic number must be valid too
  (programs and compressed data hold these few bytes by chance), as its decoder reads it.

A commit is also read decoded from the encoding its ``encoding`` header names, as ``git log``
and forges show it; one naming an encoding Python does not know is refused unscanned.

On each line, every detect-secrets plugin runs. No filter that reads something the agent chose
decides what is skipped: detect-secrets' file-name filters (``*.png``, lock files, swagger) and
its ``pragma: allowlist secret`` comments are not used. The pattern detectors (AWS keys, private
keys, tokens) are never filtered; only the guessing ones (high entropy, secret keywords, public
IPs) keep detect-secrets' heuristics against false positives, which an agent can evade anyway by
encoding or splitting a secret. The bottle's own secret values and placeholders are searched in
every view in each stored form `secret_forms` knows (as they are, base64 at any alignment, hex,
percent-encoded, JSON-escaped, UTF-16), also where line breaks cut them. A finding names the
commit, the path and the kind, never the value.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bottle_engine.bundle.config import (
    DEFAULT_MAX_BLOB_BYTES,
    DEFAULT_MAX_SCAN_BYTES,
    SecretBinding,
)
from bottle_engine.bundle.inflate import TooLarge, Unscannable, inflated
from bottle_engine.bundle.secret_forms import ValueSearch
from bottle_engine.display import safe_text

LINE_WINDOW = 4096  # longer lines are read in overlapping windows, bounding regex work per call
WINDOW_OVERLAP = 512  # a secret up to this long is whole in some window
BLOCK_LINES = 256  # lines per block for the plugins' whole-block pre-check
MIN_STRING_RUN = 8  # shortest UTF-16/32 run worth reading (no secret is shorter)

# The plugins whose findings are guesses; detect-secrets' content heuristics apply to them only.
GUESSING_PLUGINS = frozenset(
    {"Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector", "IPPublicDetector"}
)

_WIDE_RUNS = (
    ("UTF-16LE text", re.compile(rb"(?:[\x20-\x7e]\x00){%d,}" % MIN_STRING_RUN), "utf-16-le"),
    ("UTF-16BE text", re.compile(rb"(?:\x00[\x20-\x7e]){%d,}" % MIN_STRING_RUN), "utf-16-be"),
    (
        "UTF-32LE text",
        re.compile(rb"(?:[\x20-\x7e]\x00\x00\x00){%d,}" % MIN_STRING_RUN),
        "utf-32-le",
    ),
    # Not left to the UTF-32LE pattern one byte on: that misses a run's last character when
    # nothing follows it, and a key at the end of a blob lost the character that made it one.
    (
        "UTF-32BE text",
        re.compile(rb"(?:\x00\x00\x00[\x20-\x7e]){%d,}" % MIN_STRING_RUN),
        "utf-32-be",
    ),
)


@dataclass(frozen=True)
class ScanLimits:
    """How much the gate reads for one push; beyond a bound the push is refused, never skipped."""

    max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES
    max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES


@dataclass(frozen=True)
class KnownSecret:
    """A string that must never be pushed; `label` names it without revealing it."""

    text: str
    label: str


@dataclass(frozen=True)
class Finding:
    """Why a push is refused: a secret (or an unscannable object) in one commit.

    `path` is a file path, or what was read ("the commit message and headers"); `line` is the
    line in the `view` the scanner read ("" for the bytes as stored)."""

    commit: str
    path: str
    line: int | None
    kind: str
    view: str = ""

    def describe(self) -> str:
        where = safe_text(self.path, 300) + (f":{self.line}" if self.line is not None else "")
        text = (f"commit {self.commit[:12]}: " if self.commit else "") + f"{where}: {self.kind}"
        return text + (f" (in its {self.view})" if self.view else "")


def known_secrets(bindings: Iterable[SecretBinding]) -> list[KnownSecret]:
    """The bottle's secret values (read from their mounted files) and placeholders."""
    found: list[KnownSecret] = []
    for binding in bindings:
        if binding.placeholder:
            label = f"placeholder of the bottle's secret {binding.name!r}"
            found.append(KnownSecret(binding.placeholder, label))
        try:
            value = Path(binding.value_file).read_text().strip()
        except OSError:
            continue  # not mounted here: the placeholder check still applies
        if value:
            found.append(KnownSecret(value, f"value of the bottle's secret {binding.name!r}"))
    return found


# --- reading a blob as text --------------------------------------------------------------------


def text_views(data: bytes, limit: int) -> Iterator[tuple[str, str]]:
    """(view, text) pairs: every way the scanner reads `data` (see the module docstring)."""
    yield from _plain_views(data)
    for formats, content in inflated(data, limit):
        inflated_view = ", ".join(f"{name}-inflated content" for name in formats)
        for view, text in _plain_views(content):
            yield inflated_view + (f", {view}" if view else ""), text


def _plain_views(data: bytes) -> Iterator[tuple[str, str]]:
    """`data` as text, and its runs of UTF-16 or UTF-32 text when it is binary."""
    binary = b"\0" in data
    text = data.decode("utf-8", "replace")
    yield ("binary content" if binary else ""), text.replace("\0", "\n") if binary else text
    if binary:
        for view, pattern, codec in _WIDE_RUNS:
            runs = [m.group().decode(codec) for m in pattern.finditer(data)]
            if runs:
                yield view, "\n".join(runs)


# Runs of spaces are cut to two before the plugins read a line. The IBM Cloud, Cloudant,
# Softlayer and IBM COS patterns read the gap after a key name as ` *(?:=| +|...) *`, which a
# backtracking engine tries in cubic time: "password" and 4 088 spaces, one 4 KiB window, took
# 206 s. Every plugin reads a run of spaces only as a run (` *`, ` +`, `\s*`, one `\s`), so two
# spaces find what the run found.
_SPACE_RUN = re.compile(" {3,}")


def _windows(line: str) -> Iterator[str]:
    if len(line) <= LINE_WINDOW:
        yield line
        return
    step = LINE_WINDOW - WINDOW_OVERLAP
    for start in range(0, len(line) - WINDOW_OVERLAP, step):
        yield line[start : start + LINE_WINDOW]


def declared_encoding(commit: bytes) -> str | None:
    """The encoding a commit object's ``encoding`` header names (the first, as git reads it),
    or None when it has none or names UTF-8, which git shows as stored."""
    headers = commit.split(b"\n\n", 1)[0]
    for line in headers.split(b"\n"):
        if line.startswith(b"encoding "):
            name = line[len(b"encoding ") :].decode("utf-8", "replace")
            return None if name.lower() in ("utf-8", "utf8") else name
    return None


def reencoded_view(commit: bytes, name: str) -> tuple[str, str]:
    """The commit as git log shows it: decoded from the encoding it names into text."""
    try:
        text = commit.decode(codecs.lookup(name).name, "replace")
    except (LookupError, ValueError) as exc:  # LookupError too for "rot13": no text encoding
        raise Unscannable(
            f"the commit names the encoding {safe_text(name, 40)!r}, which the gate cannot read"
        ) from exc
    return f"text in the encoding the commit names ({safe_text(name, 40)})", text


# --- detect-secrets ------------------------------------------------------------------------------


# Words every match of these plugins contains (lower case), read in detect-secrets 1.5.0's
# patterns. Their regexes try many optional prefixes at every position and cost most of the
# scan; a block with none of these words cannot match. Used only with the version they were read
# from: any other version gets the regex pre-check, slower but right by construction.
ANCHORS_VERSION = "1.5.0"
_ANCHORS = {
    "CloudantDetector": ("cl",),
    "IbmCloudIamDetector": ("key", "pwd", "pass", "token"),
    "IbmCosHmacDetector": ("secret",),
    "SoftlayerDetector": ("sl",),
    "ArtifactoryDetector": ("akc", "ap"),
}


@dataclass
class _Plugin:
    plugin: Any
    guessing: bool
    # Patterns that match somewhere in a block whenever the plugin could match one of its lines;
    # None when the plugin has no such patterns (it then reads every line).
    precheck: list[re.Pattern[str]] | None
    anchors: tuple[str, ...] = ()  # when set, used instead of `precheck` on the lowered block

    def may_match(self, block: str, lowered: str) -> bool:
        if self.anchors:
            return any(anchor in lowered for anchor in self.anchors)
        return self.precheck is None or any(p.search(block) for p in self.precheck)


def _load_plugins() -> list[_Plugin]:
    # Imported here: detect-secrets is a bundle-only dependency, the rest of this module is not.
    from detect_secrets.__version__ import VERSION
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins import keyword
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin

    loaded = []
    plugin_class: Any
    for plugin_class in get_mapping_from_secret_type_to_class().values():
        plugin = plugin_class()
        precheck: list[re.Pattern[str]] | None = None
        if isinstance(plugin, RegexBasedDetector):
            precheck = [re.compile(p.pattern, p.flags | re.MULTILINE) for p in plugin.denylist]
        elif isinstance(plugin, HighEntropyStringsPlugin):
            precheck = [re.compile(plugin.regex.pattern, plugin.regex.flags | re.MULTILINE)]
        elif isinstance(plugin, keyword.KeywordDetector):
            precheck = [re.compile("|".join(keyword.DENYLIST), re.IGNORECASE)]
        anchors: tuple[str, ...] = ()
        if VERSION == ANCHORS_VERSION:
            anchors = _ANCHORS.get(plugin_class.__name__, ())
            if isinstance(plugin, keyword.KeywordDetector):
                # 'api_?key' -> 'api': every keyword match holds the part before the optional.
                anchors = tuple(word.split("_?")[0].lower() for word in keyword.DENYLIST)
        name = plugin_class.__name__
        loaded.append(_Plugin(plugin, name in GUESSING_PLUGINS, precheck, anchors))
    return loaded


def _heuristics() -> list[Callable[[Any, str, Any], bool]]:
    """detect-secrets' false-positive heuristics over a guessed secret's own text and line."""
    from detect_secrets.filters import heuristic as h

    return [
        lambda secret, line, plugin: h.is_sequential_string(secret),
        lambda secret, line, plugin: h.is_potential_uuid(secret),
        lambda secret, line, plugin: h.is_likely_id_string(secret, line, plugin),
        lambda secret, line, plugin: h.is_templated_secret(secret),
        lambda secret, line, plugin: h.is_prefixed_with_dollar_sign(secret),
        lambda secret, line, plugin: h.is_indirect_reference(line),
        lambda secret, line, plugin: h.is_not_alphanumeric_string(secret),
    ]


@dataclass
class Detectors:
    """detect-secrets' plugins, run over lines with no filter that reads agent-chosen names."""

    plugins: list[_Plugin] = field(default_factory=_load_plugins)
    heuristics: list[Callable[[Any, str, Any], bool]] = field(default_factory=_heuristics)

    def scan(self, filename: str, text: str) -> Iterator[tuple[int, str]]:
        """(line number, kind) of every detected secret in `text`."""
        lines = _SPACE_RUN.sub("  ", text).split("\n")
        for start in range(0, len(lines), BLOCK_LINES):
            block_lines = lines[start : start + BLOCK_LINES]
            block = "\n".join(block_lines)
            lowered = block.lower()
            for entry in self.plugins:
                if not entry.may_match(block, lowered):
                    continue
                for offset, line in enumerate(block_lines):
                    if entry.anchors and not entry.may_match(line, line.lower()):
                        continue
                    for window in _windows(line):
                        if self._found(entry, filename, window):
                            yield start + offset + 1, str(entry.plugin.secret_type)
                            break

    def _found(self, entry: _Plugin, filename: str, line: str) -> bool:
        secrets = entry.plugin.analyze_line(filename=filename, line=line, line_number=0)
        for secret in secrets:
            value = secret.secret_value or ""
            if entry.guessing and any(h(value, line, entry.plugin) for h in self.heuristics):
                continue
            return True
        return False


# --- the scanner ---------------------------------------------------------------------------------


class Scanner:
    """Scans the objects of one push, charging every byte it reads to the push's budget."""

    def __init__(
        self,
        secrets: Iterable[KnownSecret],
        limits: ScanLimits = ScanLimits(),
        detectors: Detectors | None = None,
    ) -> None:
        self.search = ValueSearch((secret.text, secret.label) for secret in secrets)
        self.limits = limits
        self.detectors = detectors or Detectors()
        self.scanned = 0
        self.exhausted = False  # the push's scan budget is spent: refuse, read no further

    def blob(self, commit: str, path: str, data: bytes) -> list[Finding]:
        """Findings in a file's content."""
        return self._read(commit, path, data, filename=path)

    def message(self, commit: str, what: str, data: bytes) -> list[Finding]:
        """Findings in a commit or tag object: message, author, committer and every header."""
        return self._read(commit, what, data, filename="message.txt", encoding=True)

    def name(self, commit: str, what: str, name: str) -> list[Finding]:
        """Findings in a name that goes upstream (a path or a ref). The finding shows `what`,
        not the name, which may be the secret itself."""
        found = self._read(commit, what, name.encode(), filename="name.txt")
        return [Finding(f.commit, f.path, None, f.kind, f.view) for f in found]

    def _read(
        self, commit: str, path: str, data: bytes, *, filename: str, encoding: bool = False
    ) -> list[Finding]:
        findings: dict[tuple[str, int | None, str], Finding] = {}
        try:
            for view, text in self._views(data, encoding=encoding):
                self._charge(len(text))
                found = [
                    *self._known(commit, path, view, text),
                    *(
                        Finding(commit, path, line, kind, view)
                        for line, kind in self.detectors.scan(filename, text)
                    ),
                ]
                for finding in found:  # one per line and kind, in the first view that shows it
                    findings.setdefault((finding.path, finding.line, finding.kind), finding)
        except Unscannable as exc:
            finding = Finding(commit, path, None, f"refused unscanned: {exc}")
            findings[(path, None, finding.kind)] = finding
        return sorted(findings.values(), key=lambda f: (f.line or 0, f.kind))

    def _views(self, data: bytes, *, encoding: bool) -> Iterator[tuple[str, str]]:
        yield from text_views(data, self.limits.max_blob_bytes)
        name = declared_encoding(data) if encoding else None
        if name is not None:
            yield reencoded_view(data, name)

    def _charge(self, size: int) -> None:
        self.scanned += size
        if self.scanned > self.limits.max_scan_bytes:
            self.exhausted = True
            raise TooLarge(
                f"the push needs more than {self.limits.max_scan_bytes} bytes of scanning"
            )

    def _known(self, commit: str, path: str, view: str, text: str) -> Iterator[Finding]:
        """The bottle's values in `text`, also where line breaks cut them: `base64` and MIME
        wrap their lines at 76 characters, inside the value as often as not."""
        data = text.encode("utf-8", "replace")
        for needle, index, unwrapped in self.search.hits(data):
            line = _line_at(data, index) if unwrapped else data.count(b"\n", 0, index) + 1
            yield Finding(commit, path, line, needle.label, view)


def _line_at(data: bytes, index: int) -> int:
    """The line of `data` holding byte `index` of `data` with its line breaks removed."""
    seen = 0
    for number, line in enumerate(data.split(b"\n"), 1):
        seen += len(line) - line.count(b"\r")
        if index < seen:
            return number
    return data.count(b"\n") + 1
