"""The extension's copy of the command contract, rendered as TypeScript from `commands.COMMANDS`.

`scripts/update-contract` writes it between the markers in editors/vscode/src/contract.ts, and a
test fails when the committed text is not what this renders, so the names and argument shapes
the extension sends are the ones the server converts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from bottle_lsp.commands import COMMANDS, Command

START = "// <generated from bottle_lsp/commands.py by scripts/update-contract: edit there>"
END = "// </generated>"
_TS_TYPES = {str: "string", bool: "boolean", int: "number", float: "number"}


def typescript() -> str:
    """The generated block, markers included."""
    lines = [
        START,
        "/** `workspace/executeCommand` ids the server provides (code lenses use the same ids). */",
        "export const ServerCommand = {",
        *(f'  {_key(command)}: "{command.name}",' for command in COMMANDS),
        "} as const;",
    ]
    seen: set[type] = set()
    for command in COMMANDS:
        if command.argument is not None and command.argument not in seen:
            seen.add(command.argument)
            lines += ["", *_interface(command.argument)]
    lines += ["", "/** The one argument each command takes (`undefined`: none). */"]
    lines.append("export interface ServerCommandArguments {")
    for command in COMMANDS:
        argument = command.argument.__name__ if command.argument is not None else "undefined"
        lines.append(f'  "{command.name}": {argument};')
    lines += ["}", END]
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """`text` (contract.ts) with its generated block replaced."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"contract.ts lacks the markers {START!r} ... {END!r}")
    return text[:start] + typescript() + text[end + len(END) + 1 :]


def _key(command: Command[Any]) -> str:
    """`bottle.trustReview` -> `trustReview`."""
    return command.name.removeprefix("bottle.")


def _interface(argument: type) -> list[str]:
    hints = typing.get_type_hints(argument)
    lines = [f"/** {_first_line(argument.__doc__)} */", f"export interface {argument.__name__} {{"]
    for field in dataclasses.fields(argument):
        kind, optional = _ts_type(hints[field.name])
        optional = optional or field.default is not dataclasses.MISSING
        if "doc" in field.metadata:
            lines.append(f"  /** {field.metadata['doc']} */")
        lines.append(f"  {field.name}{'?' if optional else ''}: {kind};")
    return [*lines, "}"]


def _ts_type(hint: Any) -> tuple[str, bool]:
    """The TypeScript type of a field and whether None is allowed (an optional key)."""
    if isinstance(hint, types.UnionType):
        members = [m for m in typing.get_args(hint) if m is not type(None)]
        (member,) = members
        return _TS_TYPES[member], True
    return _TS_TYPES[hint], False


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0]
