"""The images a Dockerfile reads besides its context: the ones its stages start FROM and the
ones a ``COPY --from`` names.

Their content belongs in the input key as much as the base image's: without it a ``FROM
node:20`` that Docker has since re-tagged to a newer image was answered from the store with
what the old one built, and a shared cache handed every machine that build whatever its own
``node:20`` held.

Reading the Dockerfile (continuation lines, the escape directive, comments, the global ARGs a
FROM may use and the build args that override them) is dockerfile-parse's; this module picks
out the references the way Docker's classic builder reads them: a stage named or numbered
earlier (names in any case) and ``scratch`` read no image, and a ``--from`` value is taken as
written, its quotes removed (that builder substitutes no ARG there); a FROM reads the global
ARGs as the builder's shell lexer does (`${X:-word}`, `${X:+word}`).
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Mapping

from dockerfile_parse import DockerfileParser
from dockerfile_parse.parser import image_from

SCRATCH = "scratch"
# The flags before a COPY's sources (`--chown=1:1 --from=build`); a flag's value has no space.
_LEADING_FLAGS = re.compile(r"\s*((?:--\S+\s+)*)")
_FROM_FLAG = re.compile(r"--from=(\S+)")  # the builder knows the flag in lower case only
# A variable as the builder's shell lexer reads it in a FROM: `$X`, `${X}`, `${X:-word}` (word
# when X is unset or empty), `${X:+word}` (word when X is set and not empty); word is read too.
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::([-+])((?:[^{}]|\{[^{}]*\})*))?\}|(\w+))")
# An empty line inside a continuation: the builder skips it (with a warning), and reads on.
_EMPTY_LINE = re.compile(r"^[ \t]*\r?\n", re.MULTILINE)
# The first instruction: before it, an empty line ends the parser directives (`# escape=`).
_FIRST_INSTRUCTION = re.compile(r"^[ \t]*[^#\s]", re.MULTILINE)


def referenced_images(dockerfile: bytes, build_args: Mapping[str, str]) -> tuple[str, ...]:
    """The image references `dockerfile` reads with `build_args`, sorted, each once."""
    # Docker reads bytes and skips a BOM; no image reference holds a byte that is not UTF-8.
    text = _without_empty_lines(dockerfile.decode("utf-8-sig", errors="replace"))
    parser = DockerfileParser(fileobj=io.StringIO(text), build_args=dict(build_args))
    global_args: dict[str, str] = {}  # the ARGs before the first FROM, which a FROM reads
    stages = {SCRATCH}  # names that read no image, lower case
    found: set[str] = set()
    seen_from = False
    for instruction in parser.structure:
        kind, value = instruction["instruction"], instruction["value"]
        seen_from = seen_from or kind == "FROM"
        if kind == "ARG" and not seen_from:
            _declare(value, build_args, global_args)
        elif kind == "FROM":
            image, name = image_from(value)
            if image is None:  # an empty FROM: the builder refuses it
                continue
            _add_image(_substituted(image, global_args), stages, found)
            if name:
                stages.add(name.lower())
        elif kind == "COPY":
            flags = _LEADING_FLAGS.match(value)
            source = _FROM_FLAG.search(flags.group(1)) if flags else None
            if source is not None and not source.group(1).isdigit():
                _add_image(_unquoted(source.group(1)), stages, found)
    return tuple(sorted(found))


def _without_empty_lines(text: str) -> str:
    """`text` without its empty lines after the first instruction: outside a continuation one
    means nothing to the builder either, and before it one ends the parser directives."""
    if first := _FIRST_INSTRUCTION.search(text):
        return text[: first.start()] + _EMPTY_LINE.sub("", text[first.start() :])
    return text


def _declare(value: str, build_args: Mapping[str, str], args: dict[str, str]) -> None:
    """Record in `args` the global ARGs an `ARG` instruction's `value` declares: a build arg
    overrides a declared one; one with neither a default nor a build arg stays unset."""
    for word in value.split():
        key, has_default, default = word.partition("=")
        if key in build_args:
            args[key] = build_args[key]
        elif has_default:
            args[key] = _substituted(_unquoted(default), args)


def _substituted(word: str, args: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name, how, alternative, bare = match.groups()
        current = args.get(name or bare, "")
        if how == "-":
            return current or _substituted(alternative, args)
        if how == "+":
            return _substituted(alternative, args) if current else ""
        return current

    return _VARIABLE.sub(value, word)


def _unquoted(word: str) -> str:
    try:
        return "".join(shlex.split(word))
    except ValueError:  # an unbalanced quote: the builder refuses the line, so does the lookup
        return word


def _add_image(reference: str, stages: set[str], found: set[str]) -> None:
    if reference and reference.lower() not in stages:
        found.add(reference)
