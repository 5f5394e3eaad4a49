"""Where the engine looks programs up: the PATH entries that are absolute directories.

An empty or relative PATH entry (``PATH=$PATH:`` with a trailing ``:``, ``.``, ``bin``) names a
place under the working directory. Language clients start `bottle-lsp` in the workspace folder
by default, and the terminal VS Code opens for `bottle-engine attach` starts there: a repository
an agent wrote.
There, ``shutil.which("smolvm")`` and ``subprocess.run(["git", ...])`` would find and run the
repository's own ``smolvm`` or ``git`` with the person's rights, as soon as the editor lists
bottles. Go's ``exec.LookPath`` refuses such a result for the same reason; the editor
extension's own lookup passes over relative entries too (``serverCommand.findOnPath``).

Both entry points call `keep_absolute_entries` first, so every lookup after it (``shutil.which``,
``subprocess``, the docker SDK's credential helpers) and every child process sees only absolute
directories. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping


def absolute_entries(path: str) -> tuple[str, list[str]]:
    """`path` without its empty and relative entries, and the entries left out (in order)."""
    kept: list[str] = []
    dropped: list[str] = []
    for entry in path.split(os.pathsep):
        (kept if os.path.isabs(entry) else dropped).append(entry)
    return os.pathsep.join(kept), dropped


def keep_absolute_entries(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Drop the empty and relative entries from ``environ["PATH"]``; the entries dropped.

    An unset PATH stays unset (lookups then use ``os.defpath``, absolute directories). A PATH
    left with no entry becomes ``os.defpath``'s absolute ones: an empty PATH is itself the one
    entry "here" to ``execvp``."""
    path = environ.get("PATH")
    if path is None:
        return []
    kept, dropped = absolute_entries(path)
    if dropped:
        environ["PATH"] = kept or absolute_entries(os.defpath)[0]
    return dropped
