"""The `bottle.toml` schema: the single source of truth about every field.

Names, kinds, defaults, enums, ranges and documentation are written here once. From this tree
come validation (`validate.py`), the typed model's defaults (`model.py`), completions and hover
in the language server, `bottle-engine schema` (JSON Schema for taplo / Even Better TOML), and
the manifest reference in the README (`markdown_reference`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bottle_engine.manifest.source import KeyPath


class Kind(enum.Enum):
    STRING = "string"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    NUMBER = "number"  # integer or float
    STRING_LIST = "array of strings"
    STRING_MAP = "table of strings"
    TABLE = "table"
    NAMED_TABLES = "tables by name"  # [agents.NAME], [bottles.NAME.secrets.NAME]
    TABLE_ARRAY = "array of tables"  # [[bottles.NAME.git]]


class Format(enum.Enum):
    """Extra checks on a string's content beyond its type."""

    EGRESS_RULE = "egress-rule"
    MEMORY = "memory"
    PATH = "path"
    BRANCH_GLOB = "branch-glob"
    NAME = "name"
    GIT_URL = "git-url"
    ONE_LINE = "one-line"
    HEADER_NAME = "header-name"
    ENV_NAME = "env-name"


# The content each format must match, as regexes valid in both Python and JSON Schema (ECMA):
# validation, the model's memory parser and the JSON Schema export all read them from here.
# The memory pattern's groups are the number and the unit.
FORMAT_PATTERNS: dict[Format, str] = {
    Format.MEMORY: r"^([0-9]+(?:\.[0-9]+)?)([kKmMgGtT]?)$",
    Format.NAME: r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    Format.BRANCH_GLOB: r"^[A-Za-z0-9_.*?/\[\]-]+$",
    # No leading '-' (git reads "--upload-pack=CMD" where a url may stand as an option), no
    # space or control character.
    Format.GIT_URL: r"^[^-\s\x00-\x1f\x7f][^\s\x00-\x1f\x7f]*$",
    # A line written into a file of lines (known_hosts): a line break would add lines of its own.
    Format.ONE_LINE: r"^[^\x00-\x1f\x7f]*$",
    # No file name holds a NUL; every other character is the file system's to allow.
    Format.PATH: r"^[^\x00]*$",
    # An HTTP field name: one or more token characters (RFC 9110 5.1 and 5.6.2).
    Format.HEADER_NAME: r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
    # What a shell, Docker's `--env NAME=VALUE` and smolvm's `-e` read as one variable's name.
    Format.ENV_NAME: r"^[A-Za-z_][A-Za-z0-9_]*$",
}
_COMPILED = {fmt: re.compile(pattern) for fmt, pattern in FORMAT_PATTERNS.items()}


def format_match(fmt: Format, text: str) -> re.Match[str] | None:
    """`text` matched against the pattern of `fmt` (which must have one)."""
    return _COMPILED[fmt].match(text)


class Ref(enum.Enum):
    """What a field's value names elsewhere: completion offers those names, hover and
    navigation follow them, validation checks they exist."""

    BOTTLE = "bottle"  # the NAME of a [bottles.NAME] table in the same manifest
    SKILL = "skill"  # a directory under ~/.claude/skills
    ENV_VAR = "environment variable"  # of the `launch` process
    ALLOWED_HOST = "egress allowlist entry"  # an entry of the same bottle's egress.allow


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class MustExist:
    """A path field whose file validation checks: the problem its absence is, and what that
    absence breaks (the end of the message)."""

    code: str
    consequence: str


@dataclass(frozen=True)
class Field:
    """One key of the manifest, or a table of them."""

    name: str
    kind: Kind
    doc: str
    default: Any = MISSING
    required: bool = False
    enum: tuple[str, ...] = ()
    enum_docs: tuple[str, ...] = ()  # one line per enum value, same order
    minimum: float | None = None
    maximum: float | None = None
    format: Format | None = None
    key_format: Format | None = None  # what a STRING_MAP's keys must match
    example: str | None = None  # a TOML snippet for hover and the README
    children: tuple[Field, ...] = ()
    item_name: str = "NAME"  # what a NAMED_TABLES key stands for, e.g. "AGENT"
    refers_to: Ref | None = None
    must_exist: MustExist | None = None  # a PATH whose file validation checks is there

    @property
    def is_table(self) -> bool:
        return self.kind in (Kind.TABLE, Kind.NAMED_TABLES, Kind.TABLE_ARRAY)

    def child(self, name: str) -> Field | None:
        return next((c for c in self.children if c.name == name), None)

    @property
    def type_label(self) -> str:
        if self.enum:
            return " | ".join(f'"{value}"' for value in self.enum)
        return self.kind.value


# --- the schema ------------------------------------------------------------------------------

AGENT_FIELDS = (
    Field(
        "bottle",
        Kind.STRING,
        "The bottle (sandbox + gateway) this agent runs in: the NAME of a `[bottles.NAME]` "
        "table. May be omitted when the manifest defines exactly one bottle.",
        format=Format.NAME,
        refers_to=Ref.BOTTLE,
        example='bottle = "default"',
    ),
    Field(
        "prompt",
        Kind.STRING,
        "Markdown appended to the agent's system prompt. Use either `prompt` or `prompt_file`.",
        example='prompt = "Review the open pull request and summarise the risks."',
    ),
    Field(
        "prompt_file",
        Kind.STRING,
        "A markdown file appended to the agent's system prompt, relative to this manifest. "
        "Copied into the bottle with mode 0600. Use either `prompt` or `prompt_file`.",
        format=Format.PATH,
        must_exist=MustExist("BB204", "create it or fix the path (relative to bottle.toml)"),
        example='prompt_file = "agents/reviewer.md"',
    ),
    Field(
        "command",
        Kind.STRING_LIST,
        "The program the bottle runs for this agent, as an argument list.",
        default=["claude"],
        example='command = ["claude", "--model", "sonnet"]',
    ),
    Field(
        "skills",
        Kind.STRING_LIST,
        "Claude Code skills copied into the bottle from `~/.claude/skills/<name>`.",
        default=[],
        format=Format.NAME,
        refers_to=Ref.SKILL,
        example='skills = ["pdf"]',
    ),
    Field(
        "copy_cwd",
        Kind.BOOLEAN,
        "Copy the directory `launch` runs in into the bottle's `/workspace`. The host "
        "directory is never mounted: the agent works on a copy, without the files whose "
        "content goes to the bundle only (a secret's `from_file`, a git `identity`), under "
        "any name, nor the engine's state dir or the credential places of the home "
        "directory (`~/.ssh`, `~/.aws`, `~/.netrc`, ...; a launch from inside one is refused); a "
        "copy, skill or prompt holding a secret's real value elsewhere (a `.env`), as written "
        "or encoded (base64, hex, percent, JSON, UTF-16, UTF-32), or in a git history it "
        "copies, stops the launch; so does a git config holding a credential (a token in a "
        "remote's url).",
        default=True,
        example="copy_cwd = false",
    ),
)

# `[egress] intercept`: which HTTPS tunnels the proxy opens (the bundle reads these names too).
INTERCEPT_SECRETS = "secrets"  # only tunnels to hosts bound to a secret
INTERCEPT_ALL = "all"  # every HTTPS tunnel, so that a Host inside TLS is judged too
INTERCEPT_MODES = (INTERCEPT_SECRETS, INTERCEPT_ALL)

# The request headers a secret's real value may be sent in when its manifest names none: those
# clients send credentials in and servers read as credentials, never keep as data. A header a
# server may store or hand back (object metadata such as X-Amz-Meta-*, a file name in
# Content-Disposition or Dropbox-API-Arg, a User-Agent or X-Request-Id that lands in a log) would
# let the agent read the real value back from a host the proxy does not scrub.
DEFAULT_SECRET_HEADERS = [
    # RFC 9110 credentials: Bearer tokens (OAuth, Claude Code's subscription login, GitHub, most
    # REST APIs) and Basic auth. Servers verify it; none stores it as an object's data.
    "Authorization",
    # The Anthropic API (Claude Code with an API key), and many others' API keys.
    "X-Api-Key",
    # Azure OpenAI and other Azure AI services.
    "Api-Key",
    # OpenStack (Keystone, Swift) tokens, and services copying their scheme.
    "X-Auth-Token",
    # GitLab personal, project and group access tokens.
    "Private-Token",
    # Google Cloud API keys.
    "X-Goog-Api-Key",
    # Not Cookie: a cookie is whatever name=value pairs the agent writes, and sites keep some of
    # them as preferences they show back. Add it (or any other header) in `headers`.
]

SECRET_FIELDS = (
    Field(
        "from_env",
        Kind.STRING,
        "Read the real value from this environment variable of the `launch` process. "
        "Use either `from_env` or `from_file`.",
        refers_to=Ref.ENV_VAR,
        example='from_env = "ANTHROPIC_API_KEY"',
    ),
    Field(
        "from_file",
        Kind.STRING,
        "Read the real value from this file (`~` expands; relative to this manifest). "
        "Use either `from_env` or `from_file`.",
        format=Format.PATH,
        must_exist=MustExist("BB307", "launching will fail until it does"),
        example='from_file = "~/.config/anthropic/key"',
    ),
    Field(
        "hosts",
        Kind.STRING_LIST,
        "The only hosts that ever receive the real value. The agent sees a placeholder; the "
        "bundle's proxy swaps it for the real value in request headers to these hosts only, and "
        "refuses any request carrying the placeholder elsewhere.",
        required=True,
        format=Format.EGRESS_RULE,
        refers_to=Ref.ALLOWED_HOST,
        example='hosts = ["api.anthropic.com"]',
    ),
    Field(
        "headers",
        Kind.STRING_LIST,
        "The request headers the real value may be sent in (names, any case). A request to "
        "one of `hosts` carrying the placeholder in any other header is refused: a server may "
        "keep a header as data (object metadata, a file name, a logged User-Agent) and hand it "
        "back from a host whose answers the proxy does not scrub. List only headers the "
        "service reads as credentials.",
        default=DEFAULT_SECRET_HEADERS,
        format=Format.HEADER_NAME,
        example='headers = ["Authorization", "X-Api-Key"]',
    ),
)

GIT_FIELDS = (
    Field(
        "name",
        Kind.STRING,
        "The remote's name in the agent's workspace, and the repository name on the git gate.",
        required=True,
        format=Format.NAME,
        example='name = "origin"',
    ),
    Field(
        "url",
        Kind.STRING,
        "The real upstream. Only the bundle talks to it, with the identity below; the trust "
        "review names the host it reaches. One user and one host: a url whose host git, ssh "
        "and curl may read differently (a second '@', `%40`, a backslash, brackets round a name, "
        "`TRANSPORT::`) is refused. A credential in it (`https://user:TOKEN@host/...`) is the "
        "bundle's alone: a launch that would copy it into the bottle is refused.",
        required=True,
        format=Format.GIT_URL,
        example='url = "ssh://git@github.com/me/repo.git"',
    ),
    Field(
        "identity",
        Kind.STRING,
        "SSH private key for the upstream, mounted into the bundle only, never into the agent.",
        format=Format.PATH,
        must_exist=MustExist("BB306", "pushes to this upstream will fail"),
        example='identity = "~/.ssh/bot_ed25519"',
    ),
    Field(
        "known_host_key",
        Kind.STRING,
        "The upstream's host key as a known_hosts line; the bundle checks it strictly.",
        format=Format.ONE_LINE,
        example='known_host_key = "github.com ssh-ed25519 AAAA..."',
    ),
    Field(
        "push_branches",
        Kind.STRING_LIST,
        "Branch globs the agent may push to ('*' matches across '/', as in `bot/*` for "
        "`bot/a/b`). Anything else is refused at the gate.",
        default=[],
        format=Format.BRANCH_GLOB,
        example='push_branches = ["bot/*"]',
    ),
    Field(
        "allow_force_push",
        Kind.BOOLEAN,
        "Let the agent rewrite history on the allowed branches.",
        default=False,
    ),
    Field(
        "allow_delete",
        Kind.BOOLEAN,
        "Let the agent delete the allowed branches.",
        default=False,
    ),
    Field(
        "allow_manifest_changes",
        Kind.BOOLEAN,
        "Let the agent push changes to a `bottle.toml` (at any depth) or to a file this "
        "manifest reads (Dockerfile, prompt files, ...). Off, such a push is refused naming "
        "the file: a manifest decides what leaves a bottle, so it changes outside the bottle.",
        default=False,
        example="allow_manifest_changes = true",
    ),
    Field(
        "allow_ci_changes",
        Kind.BOOLEAN,
        "Let the agent push changes to CI definitions (`.github/workflows/`, "
        "`.gitlab-ci.yml`, `Jenkinsfile`, ...). On, the forge runs what the agent writes on "
        "push, with the CI's secrets and network, before anyone reviews it. Off, such a push "
        "is refused naming the file.",
        default=False,
        example="allow_ci_changes = true",
    ),
)

BOTTLE_FIELDS = (
    Field(
        "backend",
        Kind.STRING,
        "What the sandbox is. `BOTTLE_BACKEND` in the environment overrides it.",
        default="docker",
        enum=("docker", "smolmachines"),
        enum_docs=(
            "a Docker container on an internal network (optionally under gVisor)",
            "a libkrun microVM through smolvm, its network limited to the bundle",
        ),
        example='backend = "docker"',
    ),
    Field(
        "runtime",
        Kind.STRING,
        "The OCI runtime for the docker backend.",
        default="auto",
        enum=("auto", "runc", "runsc"),
        enum_docs=(
            "gVisor (runsc) when the daemon has it registered and it passes the engine's "
            "self-test (run with the bundle image this machine built), else runc (the launch "
            "output says which and why)",
            "the default container runtime",
            "gVisor; launching fails when the daemon does not have it registered",
        ),
        example='runtime = "runsc"',
    ),
    Field(
        "dockerfile",
        Kind.STRING,
        "The agent image's Dockerfile, relative to this manifest.",
        default="Dockerfile",
        format=Format.PATH,
        example='dockerfile = "Dockerfile"',
    ),
    Field(
        "context",
        Kind.STRING,
        "The build context directory, relative to this manifest (filtered by .dockerignore). "
        "Left out of it, whatever .dockerignore says: what `copy_cwd` leaves out (a secret's "
        "`from_file`, a git `identity`, the engine's state, ~/.ssh, ...); a context, build arg or "
        "git history in the context holding a secret's real value stops the launch and the build "
        "(checked on every launch: the image is reused by input key).",
        default=".",
        format=Format.PATH,
        example='context = "."',
    ),
    Field(
        "build_args",
        Kind.STRING_MAP,
        "Build arguments for the agent image. They are part of the artifact's input key.",
        default={},
        example='build_args = { CLAUDE_CODE_VERSION = "2.0.0" }',
    ),
    Field(
        "base_image",
        Kind.STRING,
        "Base image passed as the `BASE_IMAGE` build argument. `BOTTLE_BASE_IMAGE` overrides "
        "it; by default the Dockerfile's own pinned base is used.",
        example='base_image = "bot-bottle/base:bookworm"',
    ),
    Field(
        "ca_bundle",
        Kind.STRING,
        "Extra CA certificates (PEM) installed into the image at build time, for builds behind "
        "a TLS-inspecting proxy. `BOTTLE_CA_BUNDLE` overrides it.",
        format=Format.PATH,
        example='ca_bundle = "/etc/ssl/certs/ca-certificates.crt"',
    ),
    Field(
        "env",
        Kind.STRING_MAP,
        "Environment variables set in the sandbox. Secrets do not belong here: use "
        "`[bottles.NAME.secrets.NAME]`.",
        default={},
        key_format=Format.ENV_NAME,
        example='env = { LANG = "C.UTF-8" }',
    ),
    Field(
        "cpus",
        Kind.NUMBER,
        "CPU limit for the sandbox.",
        default=2,
        minimum=0.1,
        maximum=256,
        example="cpus = 2",
    ),
    Field(
        "memory",
        Kind.STRING,
        "Memory limit for the sandbox: a number with a unit k, m or g (e.g. `512m`, `4g`).",
        default="4g",
        format=Format.MEMORY,
        example='memory = "4g"',
    ),
    Field(
        "supervise",
        Kind.BOOLEAN,
        "Run the human-approval MCP server in the bundle and register it with the agent.",
        default=False,
        example="supervise = true",
    ),
    Field(
        "egress",
        Kind.TABLE,
        "What the bottle may reach on the network, through the bundle's proxy.",
        children=(
            Field(
                "allow",
                Kind.STRING_LIST,
                "Allowed destinations: `host`, `*.suffix` (subdomains only), an IP or CIDR, each "
                "with an optional `:port` (default ports 80 and 443). Everything else is "
                "refused. Private and loopback addresses are refused unless a CIDR lists them.",
                default=[],
                format=Format.EGRESS_RULE,
                example='allow = ["api.anthropic.com", "*.npmjs.org", "pypi.org:443"]',
            ),
            Field(
                "upstream_ca",
                Kind.STRING,
                "Extra CA certificates (PEM), relative to this manifest, that the proxy trusts "
                "when it verifies intercepted upstreams (hosts bound to a secret, or every host "
                'with `intercept = "all"`), beside the system roots: for an internal '
                "registry, forge or API with its own CA.",
                format=Format.PATH,
                must_exist=MustExist(
                    "BB309", "launching will fail until it does (relative to bottle.toml)"
                ),
                example='upstream_ca = "certs/internal-ca.pem"',
            ),
            Field(
                "ask",
                Kind.BOOLEAN,
                "Ask a person before a request (plain HTTP or CONNECT) to a host name no `allow` "
                "entry lists: the proxy holds it as an egress approval request, answered with "
                "`bottle-engine approve ID` (that host:port until the bottle stops), `approve ID "
                "--once` (this request only; for a CONNECT, its tunnel for as long as the agent "
                "keeps it open), `deny ID`, or from VS Code; no answer in 120 s is a denial. "
                "Address checks still apply, and an approved host never receives a secret. Off: "
                "such requests are refused at once.",
                default=False,
                example="ask = true",
            ),
            Field(
                "intercept",
                Kind.STRING,
                "Which HTTPS tunnels the proxy opens (terminates TLS with the bottle's CA, which "
                "the agent trusts) to judge every request inside: only those to hosts bound to "
                "a secret, or all. A shared front (a CDN, a cloud load balancer) routes by the "
                '`Host` header inside TLS, which only an opened tunnel shows: with `"all"`, a '
                "request there naming another site than the tunnel's host is refused. The "
                "price: the agent speaks HTTP/1.1 to every HTTPS host, the proxy verifies each "
                "upstream (add private CAs with `upstream_ca`), and a client that pins its "
                "server's certificate fails.",
                default=INTERCEPT_SECRETS,
                enum=INTERCEPT_MODES,
                enum_docs=(
                    "open only tunnels to hosts bound to a secret; relay the rest after "
                    "checking the TLS server name",
                    "open every HTTPS tunnel and judge each request's names",
                ),
                example='intercept = "all"',
            ),
        ),
    ),
    Field(
        "secrets",
        Kind.NAMED_TABLES,
        "Credentials the agent may use but never see. NAME is the environment variable the "
        "agent gets, holding a placeholder.",
        item_name="SECRET",
        children=SECRET_FIELDS,
    ),
    Field(
        "git",
        Kind.TABLE_ARRAY,
        "Git upstreams served through the bundle's push gate.",
        children=GIT_FIELDS,
    ),
)

ROOT = Field(
    "",
    Kind.TABLE,
    "A bot-bottle manifest.",
    children=(
        Field(
            "agents",
            Kind.NAMED_TABLES,
            "The agents you can launch: `bottle-engine launch NAME`.",
            item_name="AGENT",
            children=AGENT_FIELDS,
        ),
        Field(
            "bottles",
            Kind.NAMED_TABLES,
            "Sandboxes and their gateways (egress allowlist, secrets, git gate, approvals).",
            item_name="BOTTLE",
            children=BOTTLE_FIELDS,
        ),
    ),
)


# --- walking the schema ----------------------------------------------------------------------


def field_at(path: KeyPath) -> Field | None:
    """The schema field that `path` (keys and array indices) refers to, if any.

    A NAMED_TABLES field consumes the next key as the item's name, a TABLE_ARRAY the next
    index, so `("bottles", "x", "git", 0, "url")` resolves to the git `url` field.
    """
    current = ROOT
    steps = list(path)
    while steps:
        step = steps.pop(0)
        if current.kind in (Kind.STRING_LIST, Kind.STRING_MAP):
            return current  # an element of a scalar collection: the collection describes it
        if current.kind in (Kind.NAMED_TABLES, Kind.TABLE_ARRAY):
            if isinstance(step, int) != (current.kind == Kind.TABLE_ARRAY):
                return None  # arrays are indexed by number, named tables by name
            if not steps:
                return _item_table(current)
            step = steps.pop(0)
        if isinstance(step, int):
            return None
        found = current.child(step)
        if found is None:
            return None
        current = found
    return current


def table_at(path: KeyPath) -> Field | None:
    """The table whose keys may be written at `path` (for completion), if it is a table."""
    found = field_at(path) if path else ROOT
    if found is None:
        return None
    if found.kind in (Kind.NAMED_TABLES, Kind.TABLE_ARRAY):
        if path and isinstance(path[-1], str) and found.kind == Kind.TABLE_ARRAY:
            return None
        return _item_table(found)
    return found if found.kind == Kind.TABLE else None


def _item_table(collection: Field) -> Field:
    return Field(collection.item_name, Kind.TABLE, collection.doc, children=collection.children)


def walk(field: Field = ROOT, prefix: str = "") -> Iterator[tuple[str, Field]]:
    """Every field with its dotted display path, e.g. `bottles.NAME.egress.allow`."""
    for child in field.children:
        path = f"{prefix}.{child.name}" if prefix else child.name
        yield path, child
        if child.kind == Kind.NAMED_TABLES:
            yield from walk(child, f"{path}.{child.item_name}")
        elif child.kind == Kind.TABLE_ARRAY:
            yield from walk(child, f"{path}[]")
        elif child.kind == Kind.TABLE:
            yield from walk(child, path)


def default_at(path: KeyPath) -> Any:
    """The default of the field at `path` (MISSING when it has none)."""
    found = field_at(path)
    return MISSING if found is None else found.default


def refers_to(path: KeyPath) -> Ref | None:
    """What the value at `path` (or an element of it) names, if anything."""
    found = field_at(path)
    return None if found is None else found.refers_to


def key_referring(table: Field, ref: Ref) -> str:
    """The one key of `table` whose value names a `ref`, e.g. an agent's `bottle`."""
    (name,) = (child.name for child in table.children if child.refers_to == ref)
    return name


def implied_bottle(agent: Mapping[str, Any], bottles: Sequence[str]) -> str | None:
    """The bottle an agent runs in: the one it names, or the only bottle when it names none
    (the rule `agents.AGENT.bottle` documents); None when it is not decided."""
    agents = ROOT.child("agents")
    assert agents is not None
    key = key_referring(agents, Ref.BOTTLE)
    if key in agent:
        named = agent[key]
        return named if isinstance(named, str) else None
    return bottles[0] if len(bottles) == 1 else None


def defaults_of(table: Field) -> dict[str, Any]:
    """The defaults of a table's scalar fields (fresh copies, safe to mutate)."""
    result: dict[str, Any] = {}
    for child in table.children:
        if child.default is not MISSING:
            default = child.default
            result[child.name] = (
                list(default)
                if isinstance(default, list)
                else (dict(default) if isinstance(default, dict) else default)
            )
    return result


# --- rendering ---------------------------------------------------------------------------------


def to_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the manifest, for taplo and Even Better TOML."""
    schema = _json(ROOT)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://bot-bottle.dev/schemas/bottle.schema.json"
    schema["title"] = "bot-bottle manifest (bottle.toml)"
    return schema


_JSON_TYPES = {
    Kind.STRING: "string",
    Kind.BOOLEAN: "boolean",
    Kind.INTEGER: "integer",
    Kind.NUMBER: "number",
}


def _json(field: Field) -> dict[str, Any]:
    out: dict[str, Any] = {"description": field.doc} if field.doc else {}
    if field.kind in _JSON_TYPES:
        out.update(_json_scalar(field))
    elif field.kind == Kind.STRING_LIST:
        out["type"] = "array"
        out["items"] = {"type": "string", **_json_pattern(field)}
    elif field.kind == Kind.STRING_MAP:
        out["type"] = "object"
        out["additionalProperties"] = {"type": "string"}
        if field.key_format is not None:
            out["propertyNames"] = {"pattern": FORMAT_PATTERNS[field.key_format]}
    elif field.kind == Kind.TABLE:
        out.update(_json_table(field))
    elif field.kind == Kind.NAMED_TABLES:
        out["type"] = "object"
        out["additionalProperties"] = _json_table(field)
    elif field.kind == Kind.TABLE_ARRAY:
        out["type"] = "array"
        out["items"] = _json_table(field)
    if field.default is not MISSING:
        out["default"] = field.default
    return out


def _json_scalar(field: Field) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _JSON_TYPES[field.kind]}
    if field.enum:
        out["enum"] = list(field.enum)
    if field.minimum is not None:
        out["minimum"] = field.minimum
    if field.maximum is not None:
        out["maximum"] = field.maximum
    out.update(_json_pattern(field))
    return out


def _json_pattern(field: Field) -> dict[str, str]:
    if field.format in FORMAT_PATTERNS:
        return {"pattern": FORMAT_PATTERNS[field.format]}
    return {}


def _json_table(field: Field) -> dict[str, Any]:
    table: dict[str, Any] = {
        "type": "object",
        "properties": {child.name: _json(child) for child in field.children},
        "additionalProperties": False,
    }
    required = [child.name for child in field.children if child.required]
    if required:
        table["required"] = required
    return table


def markdown_reference() -> str:
    """The manifest reference table for the README."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for path, field in walk():
        if field.is_table:
            lines.append(f"| `[{path}]` | {field.kind.value} | | {field.doc} |")
            continue
        default = "" if field.default is MISSING else f"`{_toml_literal(field.default)}`"
        if field.required:
            default = "required"
        meaning = field.doc
        if field.enum_docs:
            meaning += " " + "; ".join(
                f"`{value}`: {doc}" for value, doc in zip(field.enum, field.enum_docs, strict=True)
            )
        lines.append(f"| `{path}` | {_cell(field.type_label)} | {default} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A table cell: a bare `|` (as in `"auto" | "runc"`) would end the cell early."""
    return text.replace("|", "\\|")


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{}"
            if not value
            else "{ " + ", ".join(f"{k} = {_toml_literal(v)}" for k, v in value.items()) + " }"
        )
    return str(value)
