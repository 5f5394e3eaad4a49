"""Secret scanning of pushed commits: detect-secrets over the added lines of each commit, plus
the bottle's own secret values and placeholders (which no detector would recognise)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bottle_engine.bundle.config import SecretBinding


@dataclass(frozen=True)
class KnownSecret:
    """A string that must never be pushed; `label` names it without revealing it."""

    text: str
    label: str


@dataclass(frozen=True)
class Finding:
    """A secret found on an added line of one commit."""

    commit: str
    path: str
    line: int
    kind: str

    def describe(self) -> str:
        return f"commit {self.commit[:12]}: {self.path}:{self.line}: {self.kind}"


@dataclass(frozen=True)
class AddedLine:
    path: str
    line: int
    text: str


_FILE_HEADER = re.compile(r"^\+\+\+ (?:b/)?(.*)$")
_HUNK_HEADER = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def added_lines(diff: str) -> Iterator[AddedLine]:
    """The added lines of a unified diff (``git diff -U0``), with their new-file line numbers."""
    path: str | None = None
    line_no = 0
    for raw in diff.splitlines():
        if raw.startswith("+++ "):
            match = _FILE_HEADER.match(raw)
            path = None if raw == "+++ /dev/null" or match is None else match.group(1)
            continue
        hunk = _HUNK_HEADER.match(raw)
        if hunk:
            line_no = int(hunk.group(1))
            continue
        if path is None or raw.startswith("---"):
            continue
        if raw.startswith("+"):
            yield AddedLine(path, line_no, raw[1:])
            line_no += 1
        elif raw.startswith(" "):
            line_no += 1


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


def scan_commit_diff(commit: str, diff: str, secrets: Iterable[KnownSecret]) -> list[Finding]:
    """Every secret on an added line of `diff` (the changes `commit` introduces)."""
    lines = list(added_lines(diff))
    secrets = list(secrets)
    findings = [
        Finding(commit, added.path, added.line, secret.label)
        for added in lines
        for secret in secrets
        if secret.text in added.text
    ]
    findings.extend(_detect_secrets(commit, lines))
    return sorted(set(findings), key=lambda f: (f.path, f.line, f.kind))


def _detect_secrets(commit: str, lines: list[AddedLine]) -> list[Finding]:
    """Run detect-secrets' file scan over the added lines, each file rebuilt in a temp dir with
    its added lines at their own line numbers (blank elsewhere), so that findings carry the real
    line numbers and detect-secrets' file-name rules (lock files, binaries, languages) apply."""
    # Imported here: detect-secrets is a bundle-only dependency, the parsing above is not.
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    by_path: dict[str, dict[int, str]] = {}
    for added in lines:
        by_path.setdefault(added.path, {})[added.line] = added.text
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="gitgate-scan-") as temp, default_settings():
        root = Path(temp).resolve()
        for path, numbered in by_path.items():
            target = (root / path).resolve()
            if not target.is_relative_to(root):
                continue  # git never produces such paths; refuse to write outside the temp dir
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(
                "\n".join(numbered.get(n, "") for n in range(1, max(numbered) + 1)) + "\n"
            )
            findings.extend(
                Finding(commit, path, int(secret.line_number), str(secret.type))
                for secret in scan_file(str(target))
            )
    return findings
