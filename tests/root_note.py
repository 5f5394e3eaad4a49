"""A shared library that notes each process it is loaded in as root: what an LD_PRELOAD naming
a file the agent can write makes of the engine's root commands in the sandbox."""

from __future__ import annotations

import subprocess
from pathlib import Path

NOTE = "/tmp/preloaded-as-root"  # one line "0" per root process that loaded it
LIBRARY = "note-root.so"
SOURCE = f"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void note(void) {{
    if (getuid() != 0) return;
    int fd = open("{NOTE}", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {{ write(fd, "0\\n", 2); close(fd); }}
}}
"""


def build_note_library(directory: Path) -> Path:
    """The library, compiled into `directory` (the host's glibc is the test images' own)."""
    source = directory / "note-root.c"
    source.write_text(SOURCE)
    library = directory / LIBRARY
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    source.unlink()
    return library
