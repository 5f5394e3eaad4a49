"""Launch's search of a copy's compressed files and archives vs. its search of the copy's bytes.

Every launch that copies a project searches the copy's bytes for the bottle's real values in
all their stored forms (`ValueSearch.first` over the tar), then opens each file that may hold a
compressed stream or a zip entry and searches what it inflates to (`copied_archives`). The
project here is `--files` small source files, with or without a few archives (a .tar.gz of a
source tree, a zip of 20 entries, an .xz of a log).

* **archives**: `ArchiveSearch.first` over every regular file of the copy (each file screened
  by `may_hold_streams`, the archives inflated and searched), as a launch does;
* **baseline**: `ValueSearch.first` over the copy's bytes, the search launches did before.

    python benchmarks/bench_copy_search.py [--files 5000] [--repeat 7] [--json]
"""

from __future__ import annotations

import io
import lzma
import random
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import arguments, medians, print_result, timed
from bottle_engine.bundle.secret_forms import ValueSearch
from bottle_engine.copied_archives import ArchiveSearch, packed_files
from bottle_engine.guest import workspace_archive


def source_text(rng: random.Random, lines: int) -> str:
    words = ["value", "count", "index", "result", "name", "items", "total", "config"]
    return "".join(
        f"def f_{n}({rng.choice(words)}):\n"
        f"    return {rng.choice(words)} + {rng.randrange(10**6)}\n"
        for n in range(lines // 2)
    )


def make_project(root: Path, files: int, *, archives: bool, seed: int = 7) -> None:
    rng = random.Random(seed)
    for n in range(files):
        directory = root / f"pkg{n % 50}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"module_{n}.py").write_text(source_text(rng, 40))
    if not archives:
        return
    tree = io.BytesIO()
    with tarfile.open(fileobj=tree, mode="w:gz") as packed:
        for n in range(200):
            data = source_text(rng, 300).encode()
            info = tarfile.TarInfo(f"vendor/lib_{n}.py")
            info.size = len(data)
            packed.addfile(info, io.BytesIO(data))
    (root / "vendor.tar.gz").write_bytes(tree.getvalue())
    with zipfile.ZipFile(root / "docs.zip", "w", zipfile.ZIP_DEFLATED) as zipped:
        for n in range(20):
            zipped.writestr(f"docs/page_{n}.md", source_text(rng, 400))
    (root / "build.log.xz").write_bytes(lzma.compress(source_text(rng, 20000).encode()))


def archive_search(archive: tarfile.TarFile, tree: bytes, search: ValueSearch) -> object:
    """What a launch adds for a copy's archives: the tar is listed already (the history search
    lists it first)."""
    return ArchiveSearch(search).first(packed_files(archive, tree))


def measured(tree: bytes, search: ValueSearch, repeat: int) -> dict[str, float]:
    """The median seconds of each side over the copy `tree`."""
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.getmembers()
        assert search.first(tree) is None and archive_search(archive, tree, search) is None
        sides = {
            "archives": lambda: archive_search(archive, tree, search),
            "baseline": lambda: search.first(tree),
        }
        runs: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(repeat):
            for side, run in sides.items():
                runs[side].append(timed(run))
    return medians(runs)


def main() -> int:
    parser = arguments(__doc__, repeat=7)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()

    search = ValueSearch(
        [
            ("sk-ant-api03-bench-" + "q" * 64, "secret ANTHROPIC_API_KEY"),
            ("ghp_bench" + "z" * 31, "secret GITHUB_TOKEN"),
        ],
        short_words=True,
    )
    result: dict[str, object] = {"files": args.files}
    lines = []
    for label, archives in (("plain", False), ("with_archives", True)):
        with tempfile.TemporaryDirectory(prefix="bench-copy-") as scratch:
            project = Path(scratch) / "project"
            make_project(project, args.files, archives=archives)
            tree = workspace_archive(project)
        median = measured(tree, search, args.repeat)
        ratio = round(median["archives"] / median["baseline"], 2)
        mib = len(tree) / 2**20
        result[label] = {
            "copy_mib": round(mib, 2),
            "seconds": {side: round(s, 4) for side, s in median.items()},
            "archives_over_baseline": ratio,
        }
        lines.append(
            f"{label}: {mib:.1f} MiB copy; archive search {median['archives'] * 1000:.0f} ms, "
            f"value search of the bytes {median['baseline'] * 1000:.0f} ms "
            f"(median of {args.repeat}): {ratio}x"
        )
    print_result(result, as_json=args.json, lines=lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
