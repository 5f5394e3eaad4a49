"""What the bundle image is built from: Dockerfile, pinned requirements, the bundle's source.

It runs on the host, beside the other artifacts, and reads `bottle_engine/bundle/` (what runs
inside the bundle) as its input; nothing in that package imports it.

The launch code hands `bundle_build_spec(...)` to `bottle_engine.artifacts.ensure_artifact`.
It is always built on the machine that runs it, never pulled from the shared cache
(`BuildSpec.shared_cache`).
The build context holds only the modules of `bottle_engine` that the bundle imports (found by
following its imports), so an edit to the CLI or the language server changes neither the
bundle's input key nor its image. The context is materialized under the cache dir, in a
directory named by its content hash and written through a temp name, so it is made once.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import bottle_engine
from bottle_engine.artifacts.spec import BuildSpec
from bottle_engine.state import cache_dir, make_cache_dir

BUNDLE_ARTIFACT_NAME = "bundle"
_PACKAGE_ROOT = Path(bottle_engine.__file__).resolve().parent
BUNDLE_DIR = _PACKAGE_ROOT / "bundle"
REQUIREMENT_NAMES = ("requirements.txt", "requirements-proxy.txt")  # the pins, hashed
_BUILD_FILES = ("Dockerfile", *REQUIREMENT_NAMES)
# CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state: two
# launches in one process (the language server's threads) parsing at once can fail with
# "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905).
_AST_PARSE_LOCK = threading.Lock()


def bundle_build_spec(base_image: str, ca_bundle: Path | None) -> BuildSpec:
    """The bundle image's build: FROM `base_image`, trusting the PEM `ca_bundle` if given."""
    context = bundle_context_dir()
    return BuildSpec(
        name=BUNDLE_ARTIFACT_NAME,
        dockerfile=context / "Dockerfile",
        context=context,
        build_args={},
        base_image=base_image,
        ca_bundle=ca_bundle,
        source_date_epoch=0,  # the context is generated: no commit time to clamp to
        # The gateway holds every real secret value; an agent allowed to push to the shared
        # cache could otherwise choose the image it runs.
        shared_cache=False,
    )


def bundle_context_files() -> list[tuple[str, Path]]:
    """(path in the build context, source file) for every file of the bundle's context."""
    files = [(name, BUNDLE_DIR / name) for name in _BUILD_FILES]
    files += [
        (f"bottle_engine/{path.relative_to(_PACKAGE_ROOT).as_posix()}", path)
        for path in sorted(bundle_source_files())
    ]
    return files


def bundle_context_dir() -> Path:
    """The materialized build context (created on first use, then reused)."""
    files = bundle_context_files()
    digest = hashlib.sha256()
    for relative, source in files:
        digest.update(f"{relative}\0{hashlib.sha256(source.read_bytes()).hexdigest()}\n".encode())
    root = cache_dir() / "bundle-context"
    final = root / digest.hexdigest()[:32]
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        for relative, source in files:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            target.chmod(0o644)  # fixed modes: they are part of the input key
        for directory in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
            directory.chmod(0o755)
        staging.rename(final)
    except FileExistsError:
        pass  # another process made the same context first
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def bundle_source_files() -> set[Path]:
    """The bundle package and every `bottle_engine` module it imports, transitively."""
    found: set[Path] = {_PACKAGE_ROOT / "__init__.py", _PACKAGE_ROOT / "py.typed"}
    queue = [p for p in BUNDLE_DIR.rglob("*.py") if "__pycache__" not in p.parts]
    known = _load_import_cache()
    seen: dict[str, list[str]] = {}
    while queue:
        path = queue.pop()
        if path in found:
            continue
        found.add(path)
        queue.extend(_package_inits(path))
        queue.extend(_imports_of(path, known, seen))
    if seen != known:
        _save_import_cache(seen)
    return {p for p in found if p.is_file()}


# Parsing every bundle module on each launch cost about 0.6 s (ast.parse + walk): the imports
# of each file are kept, keyed by the file's mtime and size (as git's index and make do), in
# the cache dir. The file set only picks what goes into the build context; the input key still
# hashes every file's bytes.
_IMPORT_CACHE_NAME = "bundle-imports.json"


def _imports_of(path: Path, known: dict[str, list[str]], seen: dict[str, list[str]]) -> list[Path]:
    try:
        stat = path.stat()
    except OSError:
        return []
    stamp = f"{stat.st_mtime_ns}:{stat.st_size}"
    entry = known.get(str(path))
    if entry and entry[0] == stamp:
        imports = entry[1:]
    else:
        imports = [str(p) for p in _imported_modules(path)]
    seen[str(path)] = [stamp, *imports]
    return [Path(p) for p in imports]


def _load_import_cache() -> dict[str, list[str]]:
    try:
        raw = json.loads((cache_dir() / _IMPORT_CACHE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): [str(x) for x in v] for k, v in raw.items() if isinstance(v, list) and v}


def _save_import_cache(entries: dict[str, list[str]]) -> None:
    try:
        directory = make_cache_dir()
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as out:
            json.dump(entries, out, sort_keys=True)
        Path(out.name).replace(directory / _IMPORT_CACHE_NAME)
    except OSError:
        pass  # a cache: the next launch parses again


def _package_inits(path: Path) -> Iterable[Path]:
    parent = path.parent
    while parent != _PACKAGE_ROOT and _PACKAGE_ROOT in parent.parents:
        yield parent / "__init__.py"
        parent = parent.parent


def _imported_modules(path: Path) -> Iterable[Path]:
    source = path.read_text(encoding="utf-8")
    with _AST_PARSE_LOCK:
        tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "bottle_engine" or name.startswith("bottle_engine."):
                yield from _module_files(name)


def _module_files(dotted: str) -> Iterable[Path]:
    base = _PACKAGE_ROOT.parent.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            yield candidate
