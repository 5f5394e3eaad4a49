"""Markdown shown in hovers and completion details, rendered from the schema and the document."""

from __future__ import annotations

import re
from typing import Any

from bottle_engine.display import safe_text
from bottle_engine.git import upstream_place
from bottle_engine.manifest import schema
from bottle_engine.manifest.schema import MISSING, Field, Kind
from bottle_engine.manifest.source import KeyPath


def schema_path(path: KeyPath) -> str:
    """`("bottles", "web", "git", 0, "url")` -> `bottles.BOTTLE.git[].url`, the schema's view."""
    out: list[str] = []
    current: Field | None = schema.ROOT
    steps = list(path)
    while steps and current is not None:
        step = steps.pop(0)
        if isinstance(step, int):
            continue
        current = current.child(step)
        if current is None:
            out.append(step)
            break
        out.append(step)
        if current.kind == Kind.NAMED_TABLES and steps:
            steps.pop(0)
            out.append(current.item_name)
        elif current.kind == Kind.TABLE_ARRAY:
            if steps and isinstance(steps[0], int):
                steps.pop(0)
            out[-1] += "[]"
    return ".".join(out)


def code(value: object) -> str:
    """`value` from the document as a markdown code span that nothing in it can close: a
    bottle.toml the agent wrote must not put links, images or markup into a hover."""
    text = safe_text(value, limit=200)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + " }"
    return str(value)


def default_text(field: Field) -> str | None:
    if field.required:
        return "required"
    if field.default is MISSING:
        return None
    return toml_literal(field.default)


def field_markdown(field: Field, path: str) -> str:
    """Doc, type, default, allowed values and an example of one field. `path` may end in a
    name from the document (an `env` entry's), so it is a code span nothing in it can close."""
    lines = [f"**{code(path)}** — {field.type_label}", "", field.doc]
    default = default_text(field)
    if default is not None:
        lines += ["", f"Default: `{default}`" if default != "required" else "Required."]
    if field.enum_docs:
        lines += [""] + [
            f'- `"{value}"`: {doc}' for value, doc in zip(field.enum, field.enum_docs, strict=True)
        ]
    if field.example:
        lines += ["", "```toml", field.example, "```"]
    return "\n".join(lines)


def enum_value_markdown(field: Field, value: str) -> str | None:
    if value not in field.enum or not field.enum_docs:
        return None
    doc = field.enum_docs[field.enum.index(value)]
    return f'**`"{value}"`** ({field.name}) — {doc}'


def bottle_summary(name: str, bottle: dict[str, Any] | None) -> str:
    """A bottle at a glance: backend, runtime, egress allowlist, secrets and git upstreams."""
    if bottle is None:
        return (
            f"**bottle {code(name)}** — not defined in this manifest (or the file does not parse)"
        )
    table = schema.field_at(("bottles", name))
    assert table is not None
    values = {**schema.defaults_of(table), **bottle}
    found = bottle.get("egress")
    egress: dict[str, Any] = found if isinstance(found, dict) else {}
    allow = egress.get("allow", [])
    asks = egress.get("ask") is True
    listed = bottle.get("git")
    git = [u for u in listed if isinstance(u, dict)] if isinstance(listed, list) else []
    # "All denied" only when nothing goes out: the gate reaches its upstreams whatever the
    # allowlist says, and a person asked may let any host through.
    closed = "nothing (all egress denied)" if not (asks or git) else "nothing"
    lines = [
        f"**bottle {code(name)}**",
        "",
        f"- backend: {code(values.get('backend'))}" + _runtime(values),
        "- egress allowlist: " + (", ".join(code(entry) for entry in allow) if allow else closed),
    ]
    if asks:
        lines.append("- unlisted hosts: held for a person's answer (`ask = true`)")
    if egress.get("intercept") == schema.INTERCEPT_ALL:
        lines.append(
            '- HTTPS: every tunnel opened, each request inside judged (`intercept = "all"`)'
        )
    secrets = bottle.get("secrets")
    if isinstance(secrets, dict) and secrets:
        lines.append("- secrets: " + ", ".join(code(secret) for secret in secrets))
    if git:
        upstreams = [
            f"{code(u.get('name', '?'))} {upstream_place(str(u.get('url')), code)}" for u in git
        ]
        lines.append("- git upstreams (pushed to by the gate): " + ", ".join(upstreams))
    return "\n".join(lines)


def _runtime(values: dict[str, Any]) -> str:
    return f" (runtime {code(values.get('runtime'))})" if values.get("backend") == "docker" else ""


def agent_summary(name: str, agent: dict[str, Any] | None, bottles: list[str]) -> str:
    """An agent at a glance: its bottle, command, prompt and skills."""
    if agent is None:
        return f"**agent {code(name)}** — the document does not parse; no details"
    table = schema.field_at(("agents", name))
    assert table is not None
    values = {**schema.defaults_of(table), **agent}
    bottle = schema.implied_bottle(agent, bottles)
    command = values.get("command")
    lines = [
        f"**agent {code(name)}** — {code('bottle-engine launch ' + name)}",
        "",
        f"- bottle: {code(bottle)}" if bottle else "- bottle: not chosen",
        f"- command: {code(toml_literal(command))}",
    ]
    if "prompt_file" in agent:
        lines.append(f"- prompt file: {code(agent['prompt_file'])}")
    elif "prompt" in agent:
        lines.append("- prompt: inline")
    if values.get("skills"):
        lines.append("- skills: " + ", ".join(code(skill) for skill in values["skills"]))
    return "\n".join(lines)
