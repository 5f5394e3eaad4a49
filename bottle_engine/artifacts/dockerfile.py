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
written, its quotes removed (that builder substitutes no ARG there).
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


def referenced_images(dockerfile: bytes, build_args: Mapping[str, str]) -> tuple[str, ...]:
    """The image references `dockerfile` reads with `build_args`, sorted, each once."""
    # Docker reads bytes and skips a BOM; no image reference holds a byte that is not UTF-8.
    text = dockerfile.decode("utf-8-sig", errors="replace")
    parser = DockerfileParser(fileobj=io.StringIO(text), build_args=dict(build_args))
    parents = iter(parser.parent_images)  # each FROM's image, global ARGs substituted
    stages = {SCRATCH}  # names that read no image, lower case
    found: set[str] = set()
    for instruction in parser.structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "FROM":
            image, name = image_from(value)
            if image is None:  # dockerfile-parse lists no parent for it either
                continue
            _add_image(next(parents), stages, found)
            if name:
                stages.add(name.lower())
        elif kind == "COPY":
            flags = _LEADING_FLAGS.match(value)
            source = _FROM_FLAG.search(flags.group(1)) if flags else None
            if source is not None and not source.group(1).isdigit():
                _add_image(_unquoted(source.group(1)), stages, found)
    return tuple(sorted(found))


def _unquoted(word: str) -> str:
    try:
        return "".join(shlex.split(word))
    except ValueError:  # an unbalanced quote: the builder refuses the line, so does the lookup
        return word


def _add_image(reference: str, stages: set[str], found: set[str]) -> None:
    if reference and reference.lower() not in stages:
        found.add(reference)
