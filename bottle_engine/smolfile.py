"""The Smolfile (smolvm's TOML machine description) a bottle's microVM is created with.

Only keys the real smolvm CLI accepts are written (1.32 refuses unknown keys at ``machine
create``); `SMOLFILE_KEYS` lists the ones this module may emit, each checked against the real
CLI. The Smolfile carries the machine's static shape (resources, working directory). The
network allow list and the environment are deliberately *not* in it: they go on the ``machine
create`` command line (``--allow-cidr``, ``--env``), so the one allowed CIDR lives in one place
and can be audited from the argv alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import tomlkit

# Top-level keys smolvm 1.32 accepts that this module writes (see the module docstring).
SMOLFILE_KEYS = frozenset({"cpus", "memory", "workdir"})
MIN_MEMORY_MIB = 256


@dataclass(frozen=True)
class SmolfileSpec:
    cpus: int
    memory_mib: int
    workdir: str


def spec_for(cpus: float, memory_bytes: int, workdir: str) -> SmolfileSpec:
    """Resources as smolvm counts them: whole vCPUs (rounded up), MiB (at least 256)."""
    return SmolfileSpec(
        cpus=max(1, math.ceil(cpus)),
        memory_mib=max(MIN_MEMORY_MIB, memory_bytes // (1024 * 1024)),
        workdir=workdir,
    )


def render_smolfile(spec: SmolfileSpec) -> str:
    """The Smolfile text for `spec`."""
    document = tomlkit.document()
    document.add(tomlkit.comment("Written by bot-bottle; network and env are on the command line."))
    document.add("cpus", spec.cpus)
    document.add("memory", spec.memory_mib)
    document.add("workdir", spec.workdir)
    assert set(document) <= SMOLFILE_KEYS  # a new key must be checked against the real CLI
    return tomlkit.dumps(document)


def write_smolfile(spec: SmolfileSpec, path: Path) -> Path:
    """Write the Smolfile for `spec` at `path` (temp name, then rename) and return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(render_smolfile(spec))
    temporary.replace(path)
    return path
