"""Warm launch to "agent ready" vs. a bare `docker run` of the same image.

Both sides run in the same process against the same daemon. The artifacts (agent and bundle
images) are built or reused once before timing, so every timed launch is warm. A launch is
everything `bottle-engine launch --detach` does: load and validate the manifest, plan, find the
artifacts by input key, create the internal and outbound networks, start the bundle and wait
until its proxy answers, create the agent container with its files and start it. The baseline
is `docker run -d IMAGE sleep infinity` until the container runs: no network, no gateway, no
hardening, what a user gives up by not using a bottle.

    python benchmarks/bench_launch.py             # 5 rounds each
    python benchmarks/bench_launch.py --rounds 10

No traffic leaves the machine: the sample agent sleeps and the allowlist is empty.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bottle_engine import lifecycle
from bottle_engine.artifacts.base import DEFAULT_BASE_TAG, ensure_base_image
from bottle_engine.dockerapi import connect

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

MANIFEST = """\
[agents.bench]
command = ["sleep", "infinity"]
copy_cwd = false

[bottles.default]
dockerfile = "{repo}/Dockerfile"
context = "{repo}"
memory = "512m"
cpus = 1
"""


def timed(rounds: int, work: Callable[[], Callable[[], None]]) -> list[float]:
    """Time `work` (which returns its own cleanup) `rounds` times; cleanup is not timed."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        cleanup = work()
        samples.append(time.perf_counter() - started)
        cleanup()
    return samples


def bottle_launch(manifest: Path) -> Callable[[], None]:
    record = lifecycle.launch(manifest, "bench", cwd=manifest.parent)
    return lambda: lifecycle.stop(record.slug, remove=True)


def bare_docker_run(client: Any, image: str) -> Callable[[], None]:
    container = client.containers.run(image, ["sleep", "infinity"], detach=True)
    while container.status != "running":
        container.reload()
    return lambda: container.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    client = connect()
    os.environ.setdefault("BOTTLE_BASE_IMAGE", DEFAULT_BASE_TAG)
    if os.environ["BOTTLE_BASE_IMAGE"] == DEFAULT_BASE_TAG:
        ensure_base_image(client)
    if HOST_CA_BUNDLE.is_file():
        os.environ.setdefault("BOTTLE_CA_BUNDLE", str(HOST_CA_BUNDLE))

    with tempfile.TemporaryDirectory(prefix="bench-launch-") as scratch:
        os.environ.setdefault("BOTTLE_STATE_DIR", str(Path(scratch) / "state"))
        manifest = Path(scratch) / "bottle.toml"
        manifest.write_text(MANIFEST.format(repo=REPO_ROOT))

        print("preparing: build (or reuse) the agent and bundle images ...", flush=True)
        record = lifecycle.launch(manifest, "bench", cwd=manifest.parent)
        image = client.containers.get(record.name).image.id
        lifecycle.stop(record.slug, remove=True)

        launches = timed(args.rounds, lambda: bottle_launch(manifest))
        baseline = timed(args.rounds, lambda: bare_docker_run(client, image))

    launch_median, base_median = statistics.median(launches), statistics.median(baseline)
    print(f"image              {image}")
    print(f"rounds             {args.rounds}")
    print(f"warm launch        median {launch_median * 1000:8.0f} ms")
    print(f"bare docker run    median {base_median * 1000:8.0f} ms")
    print(f"ratio              {launch_median / base_median:8.1f}x (launch / docker run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
