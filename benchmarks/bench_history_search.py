"""Launch's search of a copied git history for real values vs. git reading the same history.

Every launch that copies a project reads back each object of every git history in the copy and
searches it for the bottle's real values in all their stored forms
(`copied_history.search_history`). The history here is a repository of a settings file of
`--kib` KiB changed `--commits` times, packed (`git gc`): most versions are deltas.

* **search**: `search_history` on the copy's tar (the object directory taken out of it, every
  object read through `git cat-file`, searched for two secrets' forms), as at the first launch;
* **next launch**: the same with the packs recorded clean by an earlier search (`CleanPacks`):
  what a launch pays when no pack came since;
* **baseline**: `git cat-file --batch-all-objects --batch` of the same objects to /dev/null,
  the least that reading every object costs (what `git log -p --all` in the sandbox also does).

    python benchmarks/bench_history_search.py [--commits 400] [--kib 256] [--repeat 5] [--json]
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import arguments, medians, print_result, timed
from bottle_engine.bundle.secret_forms import ValueSearch
from bottle_engine.copied_history import CleanPacks, search_history
from bottle_engine.guest import workspace_archive

GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str, **kwargs: object) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@b.invalid", *args],
        check=True,
        env=GIT_ENV,
        **kwargs,  # type: ignore[call-overload]
    )


def searched(tree: bytes, search: ValueSearch, clean: CleanPacks | None = None) -> object:
    """What a launch does with a copy: open its tar, search its histories."""
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        return search_history(archive, search, clean)


def make_history(repo: Path, commits: int, kib: int) -> int:
    """A packed history of `commits` versions of one file; the bytes of all its objects."""
    git(repo, "init", "-q", "-b", "main")
    lines = [f"setting_{n} = {n * 7919 % 1000003}\n" for n in range(kib * 1024 // 24)]
    for commit in range(commits):
        lines[commit * 31 % len(lines)] = f"setting_changed_{commit} = {commit}\n"
        (repo / "settings.py").write_text("".join(lines))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"change {commit}")
    git(repo, "gc", "-q", "--prune=now")
    sizes = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch-check=%(objectsize)"],
        check=True,
        capture_output=True,
        text=True,
        env=GIT_ENV,
    ).stdout.split()
    return sum(int(size) for size in sizes)


def main() -> int:
    parser = arguments(__doc__, repeat=5)
    parser.add_argument("--commits", type=int, default=400)
    parser.add_argument("--kib", type=int, default=256, help="size of the file each commit changes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-history-") as scratch:
        repo = Path(scratch) / "project"
        repo.mkdir()
        history_bytes = make_history(repo, args.commits, args.kib)
        tree = workspace_archive(repo)
        search = ValueSearch(
            [
                ("sk-ant-api03-bench-" + "q" * 64, "secret ANTHROPIC_API_KEY"),
                ("ghp_bench" + "z" * 31, "secret GITHUB_TOKEN"),
            ],
            short_words=True,
        )
        clean = CleanPacks(Path(scratch) / "clean")
        searched(tree, search, clean)
        with open(os.devnull, "wb") as nowhere:
            sides = {
                "search": lambda: searched(tree, search),
                "next_launch": lambda: searched(tree, search, clean),
                "git_cat_file": lambda: git(
                    repo, "cat-file", "--batch-all-objects", "--batch", stdout=nowhere
                ),
            }
            runs: dict[str, list[float]] = {side: [] for side in sides}
            for _ in range(args.repeat):
                for side, run in sides.items():
                    runs[side].append(timed(run))
    median = medians(runs)
    mib = history_bytes / 2**20
    ratio = round(median["search"] / median["git_cat_file"], 1)
    saved = round(median["search"] / median["next_launch"], 1)
    result = {
        "commits": args.commits,
        "history_mib": round(mib, 1),
        "pack_mib": round(len(tree) / 2**20, 2),
        "seconds": {side: round(s, 3) for side, s in median.items()},
        "mib_per_s": {side: round(mib / s, 1) for side, s in median.items()},
        "search_over_git": ratio,
        "search_over_next_launch": saved,
    }
    lines = [
        f"history: {args.commits} commits, {mib:.1f} MiB of objects in a "
        f"{len(tree) / 2**20:.2f} MiB copy",
        *(
            f"{side:>12}: {s * 1000:.0f} ms, {mib / s:.0f} MiB/s (median of {args.repeat})"
            for side, s in median.items()
        ),
        f"the search takes {ratio}x as long as git reading every object; "
        f"the next launch's is {saved}x faster than the first",
    ]
    print_result(result, as_json=args.json, lines=lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
