"""The images a Dockerfile reads besides its context: the ones its stages start FROM and the
ones a ``COPY --from`` names.

Their content belongs in the input key as much as the base image's: without it a ``FROM
node:20`` that Docker has since re-tagged to a newer image was answered from the store with
what the old one built, and a shared cache handed every machine that build whatever its own
``node:20`` held.

Reading the Dockerfile (continuation lines, the escape directive, comments, ARG defaults and
the build args that override them) is dockerfile-parse's; this module picks out the references
the way Docker's builder reads them: a stage named or numbered earlier (names in any case) and
``scratch`` read no image.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

from dockerfile_parse import DockerfileParser
from dockerfile_parse.parser import image_from
from dockerfile_parse.util import WordSplitter

SCRATCH = "scratch"
# The flags before a COPY's sources (`--chown=1:1 --from=build`); a flag's value has no space.
_LEADING_FLAGS = re.compile(r"\s*((?:--\S+\s+)*)")
_FROM_FLAG = re.compile(r"--from=(\S+)", re.IGNORECASE)


def referenced_images(dockerfile: bytes, build_args: Mapping[str, str]) -> tuple[str, ...]:
    """The image references `dockerfile` reads with `build_args`, sorted, each once."""
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile), build_args=dict(build_args))
    parents = iter(parser.parent_images)  # each FROM's image, global ARGs substituted
    stages: list[str] = []
    found: set[str] = set()
    for instruction, context in zip(parser.structure, parser.context_structure, strict=True):
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "FROM":
            image, name = image_from(value)
            if image is None:  # dockerfile-parse lists no parent for it either
                continue
            _add_image(next(parents), stages, found)
            stages.append(name.lower() if name else "")
        elif kind == "COPY":
            flags = _LEADING_FLAGS.match(value)
            source = _FROM_FLAG.search(flags.group(1)) if flags else None
            if source is not None:
                expanded = WordSplitter(source.group(1), args=context.args).dequote()
                if not expanded.isdigit():
                    _add_image(expanded, stages, found)
    return tuple(sorted(found))


def _add_image(reference: str, stages: list[str], found: set[str]) -> None:
    if reference and reference.lower() not in (SCRATCH, *stages):
        found.add(reference)
