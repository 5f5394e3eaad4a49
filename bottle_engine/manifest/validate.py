"""Checks on a parsed manifest: first the shape the schema describes, then the cross-references.

Every check yields `Problem`s with the exact span of the key or value it is about. The same
function serves `bottle-engine validate`, every launch, and the language server.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from bottle_engine.display import safe_text
from bottle_engine.git import UnclearHostError, upstream_host
from bottle_engine.manifest import schema
from bottle_engine.manifest.egress_rules import EgressRuleError, parse_egress_rule
from bottle_engine.manifest.model import parse_memory, resolve_path
from bottle_engine.manifest.problems import Fix, Problem, format_path, toml_string
from bottle_engine.manifest.schema import Field, Format, Kind, MustExist
from bottle_engine.manifest.source import KeyPath, ParsedToml, Position, Span

_AGENT = schema.field_at(("agents", "_"))
assert _AGENT is not None
_BOTTLE_KEY = schema.key_referring(_AGENT, schema.Ref.BOTTLE)  # an agent's `bottle`


# Problems reported before checking stops. A file under `MAX_MANIFEST_BYTES` can hold two per
# three bytes (`git = [{},{},...]`); the editor validates on every change, so checking them all
# cost 42 s and 170001 diagnostics there. No one reads past the first few hundred anyway.
MAX_PROBLEMS = 200


def validate(parsed: ParsedToml, manifest_path: Path | None) -> list[Problem]:
    """The problems in the document, in document order: at most `MAX_PROBLEMS`, then one more
    error saying checking stopped (so a cut list never passes for a valid manifest)."""
    if parsed.syntax_error is not None:
        at = parsed.syntax_error_at
        assert at is not None
        # One character wide, but never past the end of its line (the error may sit on a newline).
        lines = parsed.text.split("\n")
        line_length = len(lines[at.line]) if at.line < len(lines) else 0
        end = Position(at.line, min(at.character + 1, line_length))
        span = Span(at, end)
        return [Problem("BB001", f"TOML syntax error: {parsed.syntax_error}", span)]
    checker = _Checker(parsed, manifest_path)
    # The checks are generators: `islice` stops them, so what is not reported is not computed.
    problems = list(islice(checker.structure(schema.ROOT, (), parsed.data), MAX_PROBLEMS + 1))
    if len(problems) <= MAX_PROBLEMS:
        # Cross-references only look at agents and bottles whose own shape is sound.
        unsound = {p.path[:2] for p in problems if p.is_error}
        left = MAX_PROBLEMS + 1 - len(problems)
        problems.extend(islice(checker.references(parsed.data, unsound), left))
    if len(problems) > MAX_PROBLEMS:
        at = Position(0, 0)
        problems[MAX_PROBLEMS:] = [
            Problem("BB003", f"more than {MAX_PROBLEMS} problems; checking stopped", Span(at, at))
        ]
    return sorted(problems, key=lambda p: (p.span.start.line, p.span.start.character, p.code))


# The formats a schema pattern decides: the problem a value that does not match it is.
_PATTERN_PROBLEMS: dict[Format, tuple[str, Callable[[str], str]]] = {
    Format.NAME: (
        "BB107",
        lambda text: f"'{text}' is not a valid name; use letters, digits, '-', '_' and '.'",
    ),
    Format.BRANCH_GLOB: (
        "BB308",
        lambda text: f'\'{text}\' is not a branch glob; expected e.g. "bot/*" or "main"',
    ),
    Format.GIT_URL: (
        "BB310",
        lambda text: (
            f"'{text}' is not a git url (git would read a leading '-' as an option); "
            'expected e.g. "ssh://git@github.com/me/repo.git"'
        ),
    ),
    Format.ONE_LINE: ("BB311", lambda _: "must be one line, without control characters"),
    Format.PATH: ("BB312", lambda _: "holds a NUL character, which no file name can"),
    Format.HEADER_NAME: (
        "BB313",
        lambda text: (
            f"'{text}' is not an HTTP header name; use letters, digits and '-' "
            '(any of !#$%&\'*+.^_`|~ too), e.g. "X-Api-Key"'
        ),
    ),
    Format.ENV_NAME: (
        "BB316",
        lambda text: (
            f"'{text}' is not an environment variable name; use letters, digits and '_', "
            'not starting with a digit, e.g. "LANG"'
        ),
    ),
}


class _Checker:
    def __init__(self, parsed: ParsedToml, manifest_path: Path | None) -> None:
        self.parsed = parsed
        self.base = manifest_path.parent if manifest_path else Path.cwd()

    # -- helpers -------------------------------------------------------------------------------
    def problem(
        self,
        code: str,
        path: KeyPath,
        message: str,
        *,
        value: bool = False,
        fixes: tuple[Fix, ...] = (),
    ) -> Problem:
        # Messages and fix titles quote the manifest's text, which an agent may have written;
        # `validate` prints them to a terminal and the editor shows them: escapes made visible.
        fixes = tuple(replace(fix, title=safe_text(fix.title)) for fix in fixes)
        return Problem(
            code, safe_text(message), self.parsed.span_of(path, value=value), path=path, fixes=fixes
        )

    def missing_file(self, must: MustExist, path: KeyPath, written: str) -> Iterator[Problem]:
        """The schema's problem for the file named at `path` (relative to bottle.toml) when it
        is not there."""
        target = resolve_path(self.base, written)
        if not target.is_file():
            yield self.problem(
                must.code,
                path,
                f"{format_path(path)}: {target} does not exist; {must.consequence}",
                value=True,
            )

    # -- shape ---------------------------------------------------------------------------------
    def structure(self, field: Field, path: KeyPath, value: Any) -> Iterator[Problem]:
        if field.kind == Kind.TABLE:
            yield from self.table(field, path, value)
        elif field.kind == Kind.NAMED_TABLES:
            if not isinstance(value, dict):
                yield self.wrong_type(field, path, value, kind="table")
                return
            for name, item in value.items():
                if not schema.format_match(Format.NAME, name):
                    yield self.problem(
                        "BB107",
                        (*path, name),
                        f"{format_path((*path, name))}: '{name}' is not a valid name; use "
                        "letters, digits, '-', '_' and '.', starting with a letter or digit",
                    )
                yield from self.table(field, (*path, name), item)
        elif field.kind == Kind.TABLE_ARRAY:
            if not isinstance(value, list):
                yield self.wrong_type(field, path, value)
                return
            for index, item in enumerate(value):
                yield from self.table(field, (*path, index), item)
        else:
            yield from self.scalar(field, path, value)

    def table(self, field: Field, path: KeyPath, value: Any) -> Iterator[Problem]:
        if not isinstance(value, dict):
            yield self.wrong_type(field, path, value, kind="table")
            return
        known = [child.name for child in field.children]
        for key, item in value.items():
            child = field.child(key)
            if child is None:
                yield self.unknown_key(path, key, known)
                continue
            yield from self.structure(child, (*path, key), item)
        for child in field.children:
            if child.required and child.name not in value:
                where = format_path(path) or "the manifest"
                yield self.problem(
                    "BB104",
                    path,
                    f"{where}: missing required key '{child.name}' ({child.doc.split('.')[0]})",
                )

    def unknown_key(self, path: KeyPath, key: str, known: list[str]) -> Problem:
        suggestions = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        full = format_path((*path, key))
        fixes: tuple[Fix, ...] = ()
        if suggestions:
            message = f"{full}: unknown key '{key}' (did you mean '{suggestions[0]}'?)"
            span = self.parsed.span_of((*path, key))
            fixes = (Fix(f"Replace '{key}' with '{suggestions[0]}'", span, suggestions[0]),)
        else:
            choices = ", ".join(f"'{k}'" for k in known)
            message = f"{full}: unknown key '{key}'; expected one of {choices}"
        return self.problem("BB101", (*path, key), message, fixes=fixes)

    def wrong_type(
        self, field: Field, path: KeyPath, value: Any, *, kind: str | None = None
    ) -> Problem:
        expected = kind or field.kind.value
        return self.problem(
            "BB102",
            path,
            f"{format_path(path)}: expected {_article(expected)}, found {_describe(value)}",
            value=True,
        )

    def string_list(self, field: Field, path: KeyPath, value: Any) -> Iterator[Problem]:
        if not isinstance(value, list):
            yield self.wrong_type(field, path, value)
            return
        for index, item in enumerate(value):
            if not isinstance(item, str):
                yield self.wrong_type(field, (*path, index), item, kind="string")
            else:
                yield from self.content(field, (*path, index), item)

    def string_map(self, field: Field, path: KeyPath, value: Any) -> Iterator[Problem]:
        if not isinstance(value, dict):
            yield self.wrong_type(field, path, value)
            return
        for key, item in value.items():
            key_format = field.key_format
            if key_format is not None and not schema.format_match(key_format, key):
                code, said = _PATTERN_PROBLEMS[key_format]
                yield self.problem(code, (*path, key), f"{format_path((*path, key))}: {said(key)}")
            if not isinstance(item, str):
                yield self.wrong_type(field, (*path, key), item, kind="string")

    def scalar(self, field: Field, path: KeyPath, value: Any) -> Iterator[Problem]:
        if field.kind == Kind.STRING_LIST:
            yield from self.string_list(field, path, value)
            return
        if field.kind == Kind.STRING_MAP:
            yield from self.string_map(field, path, value)
            return
        if not _has_kind(field.kind, value):
            yield self.wrong_type(field, path, value)
            return
        if field.enum and value not in field.enum:
            choices = ", ".join(f'"{choice}"' for choice in field.enum)
            suggestion = difflib.get_close_matches(str(value), field.enum, n=1, cutoff=0.5)
            hint = f' (did you mean "{suggestion[0]}"?)' if suggestion else ""
            fixes = tuple(
                Fix(
                    f'Replace with "{choice}"', self.parsed.span_of(path, value=True), f'"{choice}"'
                )
                for choice in (suggestion or field.enum)
            )
            yield self.problem(
                "BB103",
                path,
                f'{format_path(path)}: "{value}" is not allowed; expected one of {choices}{hint}',
                value=True,
                fixes=fixes,
            )
        # Written as `not value >= minimum` so that nan (which compares false) is out of range.
        if (field.minimum is not None and not value >= field.minimum) or (
            field.maximum is not None and not value <= field.maximum
        ):
            yield self.problem(
                "BB105",
                path,
                f"{format_path(path)}: {value} is out of range; expected a number from "
                f"{_num(field.minimum)} to {_num(field.maximum)}",
                value=True,
            )
        if isinstance(value, str):
            yield from self.content(field, path, value)

    def content(self, field: Field, path: KeyPath, text: str) -> Iterator[Problem]:
        if field.format == Format.EGRESS_RULE:
            try:
                parse_egress_rule(text)
            except EgressRuleError as exc:
                yield self.problem("BB301", path, f"{format_path(path)}: {exc}", value=True)
        elif field.format == Format.MEMORY:
            size = parse_memory(text)
            if size is None:
                yield self.problem(
                    "BB106",
                    path,
                    f"{format_path(path)}: '{text}' is not a memory size; expected a number "
                    'with a unit k, m or g, e.g. "512m" or "4g"',
                    value=True,
                )
            elif not 64 * 1024**2 <= size <= 1024**4:
                yield self.problem(
                    "BB105",
                    path,
                    f"{format_path(path)}: '{text}' is out of range; expected from 64m to 1t",
                    value=True,
                )
        elif field.format in _PATTERN_PROBLEMS and not schema.format_match(field.format, text):
            code, said = _PATTERN_PROBLEMS[field.format]
            yield self.problem(code, path, f"{format_path(path)}: {said(text)}", value=True)
        elif field.must_exist is not None:
            yield from self.missing_file(field.must_exist, path, text)
        elif field.format == Format.GIT_URL:
            try:
                upstream_host(text)
            except UnclearHostError as exc:
                yield self.problem(
                    "BB315",
                    path,
                    f"{format_path(path)}: '{text}': {exc}, so no review could say where pushes "
                    'go; write one user and one host, e.g. "ssh://git@github.com/me/repo.git"',
                    value=True,
                )

    # -- cross-references ----------------------------------------------------------------------
    def references(self, data: dict[str, Any], unsound: set[KeyPath]) -> Iterator[Problem]:
        if unsound & {("agents",), ("bottles",)}:
            return  # `agents` or `bottles` itself is malformed (a misspelt top-level key is not)
        bottles: dict[str, Any] = data.get("bottles", {})
        agents: dict[str, Any] = data.get("agents", {})
        if not agents:
            yield self.problem(
                "BB205",
                (),
                "the manifest defines no agents; add one, e.g. [agents.dev] with "
                'command = ["claude"]',
            )
        for name, agent in agents.items():
            if ("agents", name) not in unsound:
                yield from self.agent_references(name, agent, bottles)
        for name, bottle in bottles.items():
            if ("bottles", name) not in unsound:
                yield from self.bottle_references(name, bottle)

    def agent_references(
        self, name: str, agent: dict[str, Any], bottles: dict[str, Any]
    ) -> Iterator[Problem]:
        path: KeyPath = ("agents", name)
        target = schema.implied_bottle(agent, list(bottles))
        if _BOTTLE_KEY in agent:
            if target not in bottles:
                assert target is not None, "a non-string bottle fails the shape checks first"
                suggestions = difflib.get_close_matches(target, list(bottles), n=1, cutoff=0.5)
                span = self.parsed.span_of((*path, _BOTTLE_KEY), value=True)
                end = self.parsed.end()
                header = format_path(("bottles", target))  # quoted when the name has a dot
                named = [toml_string(s) for s in suggestions]  # names the author chose
                fixes = (
                    *(Fix(f"Use bottle {s}", span, s) for s in named),
                    Fix(f"Add a [{header}] table", Span(end, end), f"\n[{header}]\n"),
                )
                hint = f" (did you mean '{suggestions[0]}'?)" if suggestions else ""
                defined = ", ".join(f"'{b}'" for b in bottles) or "none"
                yield self.problem(
                    "BB201",
                    (*path, _BOTTLE_KEY),
                    f"agents.{name}.{_BOTTLE_KEY}: no bottle named '{target}'{hint}; "
                    f"defined: {defined}",
                    value=True,
                    fixes=fixes,
                )
        elif target is None:
            count = "no bottles are" if not bottles else f"{len(bottles)} bottles are"
            yield self.problem(
                "BB202",
                path,
                f"agents.{name}: set '{_BOTTLE_KEY}' to one of the [bottles.NAME] tables; it may "
                f"only be omitted when exactly one bottle is defined, and {count}",
            )
        if "prompt" in agent and "prompt_file" in agent:
            yield self.problem(
                "BB203",
                (*path, "prompt_file"),
                f"agents.{name}.prompt_file: set either 'prompt' or 'prompt_file', not both",
            )

    def bottle_references(self, name: str, bottle: dict[str, Any]) -> Iterator[Problem]:
        path: KeyPath = ("bottles", name)
        for key in ("dockerfile", "context"):
            target = resolve_path(self.base, bottle.get(key, schema.default_at((*path, key))))
            if not target.exists():
                yield self.problem(
                    "BB206",
                    (*path, key) if key in bottle else path,
                    f"bottles.{name}.{key}: {target} does not exist; `bottle-engine init` "
                    "writes a starter Dockerfile",
                    value=key in bottle,
                )
        allow = bottle.get("egress", {}).get("allow", [])
        rules = [parse_egress_rule(entry) for entry in allow]
        for secret_name, secret in bottle.get("secrets", {}).items():
            yield from self.secret_references(name, secret_name, secret, rules, allow)
        seen: dict[str, int] = {}
        for index, upstream in enumerate(bottle.get("git", [])):
            upstream_path: KeyPath = (*path, "git", index)
            upstream_name = upstream.get("name", "")
            if upstream_name in seen:
                span = self._element_span(upstream_path)
                yield self.problem(
                    "BB305",
                    (*upstream_path, "name"),
                    f"bottles.{name}.git[{index}].name: '{upstream_name}' is already used by "
                    f"git[{seen[upstream_name]}]; give each upstream its own name",
                    value=True,
                    fixes=(Fix("Remove this duplicate upstream", span, ""),),
                )
            seen.setdefault(upstream_name, index)

    def _element_span(self, path: KeyPath) -> Span:
        """What removing a duplicate upstream deletes: its `[[...]]` section or, written inline
        (`git = [{...}, {...}]`), the element and the comma before it."""
        located = self.parsed.locations[path]
        if located.is_header:
            return self.parsed.section_span(path)
        index = path[-1]
        assert isinstance(index, int) and index > 0, "a duplicate always follows the first"
        previous = self.parsed.locations[(*path[:-1], index - 1)].value.end
        return Span(previous, located.value.end)

    def secret_references(
        self, bottle: str, name: str, secret: dict[str, Any], rules: list[Any], allow: list[str]
    ) -> Iterator[Problem]:
        path: KeyPath = ("bottles", bottle, "secrets", name)
        sources = [key for key in ("from_env", "from_file") if key in secret]
        if len(sources) != 1:
            what = "no source" if not sources else "two sources"
            yield self.problem(
                "BB302",
                path,
                f"bottles.{bottle}.secrets.{name}: {what}; set exactly one of 'from_env' "
                "(an environment variable) or 'from_file' (a file holding the value)",
            )
        if secret.get("headers") == []:
            yield self.problem(
                "BB314",
                (*path, "headers"),
                f"bottles.{bottle}.secrets.{name}.headers: name the request headers the service "
                "reads this credential from, or leave `headers` out for the usual ones",
                value=True,
            )
        hosts = secret.get("hosts", [])
        if not hosts:
            yield self.problem(
                "BB303",
                (*path, "hosts") if "hosts" in secret else path,
                f"bottles.{bottle}.secrets.{name}.hosts: name at least one host that may "
                "receive this secret",
                value="hosts" in secret,
            )
        for index, host in enumerate(hosts):
            try:
                rule = parse_egress_rule(host)
            except EgressRuleError:
                continue  # reported as BB301 by the shape checks
            if rule.host is None:
                continue
            # `*.example.com` is covered by a suffix rule for it or a parent, never by one host.
            probe = rule.host if rule.kind == "host" else f"*.{rule.host}"
            if any(r.matches_host(probe, port) for r in rules for port in rule.ports):
                continue
            allow_span = self.parsed.span_of(("bottles", bottle, "egress", "allow"), value=True)
            fixes: tuple[Fix, ...] = ()
            if ("bottles", bottle, "egress", "allow") in self.parsed.locations:
                new_list = "[" + ", ".join(f'"{e}"' for e in [*allow, host]) + "]"
                fixes = (Fix(f"Add '{host}' to the egress allowlist", allow_span, new_list),)
            yield self.problem(
                "BB304",
                (*path, "hosts", index),
                f"bottles.{bottle}.secrets.{name}.hosts[{index}]: '{host}' is not in "
                f"bottles.{bottle}.egress.allow, so the secret can never be used; add it there",
                value=True,
                fixes=fixes,
            )


def _has_kind(kind: Kind, value: Any) -> bool:
    if kind == Kind.STRING:
        return isinstance(value, str)
    if kind == Kind.BOOLEAN:
        return isinstance(value, bool)
    if kind == Kind.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == Kind.NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, str):
        return f'a string ("{value}")' if len(value) < 40 else "a string"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _num(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else str(value)
