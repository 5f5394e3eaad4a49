"""Launch to "agent ready", cold and from the warm pool, vs. a bare `docker run` of the image.

Every side runs against the same daemon, rounds interleaved so that drift in the machine's load
hits all of them alike, under runc and (where the daemon's runsc passes the engine's
self-test) gVisor. The artifacts (agent and bundle images) are built or reused once before
timing, so every timed launch finds its images by input key.

* **cold**: everything `bottle-engine launch --detach` does: load and validate the manifest,
  plan, find the artifacts by input key, create the two networks, start the bundle and wait
  until its services answer, create the agent container with its files and start it.
* **pooled**: the same launch taking a warm pool member made just before (not timed; `pool
  fill`): hand it the bottle's config and wait for its answer, create and start the agent.
* **docker run**: `docker run -d IMAGE sleep infinity` until the container runs: no network,
  no gateway, no hardening, what a user gives up by not using a bottle.

Each is measured in process (`lifecycle.launch`, the SDK's `containers.run`) and as a whole
process from the shell (`python -m bottle_engine launch --detach --json`, the `docker` CLI).

    python benchmarks/bench_launch.py             # 3 rounds each
    python benchmarks/bench_launch.py --rounds 5 --runtime runc

No traffic leaves the machine: the sample agent sleeps and the allowlist is empty. Everything
made is removed (the bottles after each sample, the pool at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bottle_engine import gvisor, lifecycle
from bottle_engine.artifacts.base import DEFAULT_BASE_TAG, ensure_base_image
from bottle_engine.dockerapi import connect
from bottle_engine.records import BottleResources
from tests.bottle_fixtures import REPO_ROOT, TEST_BOTTLE, sleeping_agent

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# The test suite's bottle (the repository's agent image, small limits) with an agent that only
# sleeps: what is timed is the launch, nothing the agent does.
MANIFEST = sleeping_agent("bench") + TEST_BOTTLE


def timed_once(work: Callable[..., Callable[[], None]], *args: Any) -> float:
    """Time `work(*args)` (which returns its own cleanup); cleanup is not timed."""
    started = time.perf_counter()
    cleanup = work(*args)
    elapsed = time.perf_counter() - started
    cleanup()
    return elapsed


def bottle_launch(manifest: Path, runtime: str, pooled: bool) -> Callable[[], None]:
    os.environ["BOTTLE_RUNTIME"] = runtime
    record = lifecycle.launch(manifest, "bench", cwd=manifest.parent)
    return _checked(record.slug, record.resources, runtime, pooled)


def cli_launch(manifest: Path, runtime: str, pooled: bool) -> Callable[[], None]:
    """`bottle-engine launch --detach --json` as a whole process, as a user's shell runs it."""
    argv = [sys.executable, "-m", "bottle_engine", "launch", "-f", str(manifest), "bench"]
    done = subprocess.run(
        [*argv, "--detach", "--json"],
        env={**os.environ, "BOTTLE_RUNTIME": runtime},
        capture_output=True,
        text=True,
        check=True,
    )
    record = json.loads(done.stdout)
    resources = BottleResources.from_json(record["resources"])
    return _checked(record["slug"], resources, runtime, pooled)


def _checked(
    slug: str, resources: BottleResources, runtime: str, pooled: bool
) -> Callable[[], None]:
    """The launched bottle's removal, once it runs as asked (the runtime; from the pool or
    not); a bottle that does not is removed before the error, so none is left running."""

    def remove() -> None:
        lifecycle.stop(slug, remove=True)

    try:
        assert resources.runtime == runtime, resources
        assert resources.gateway is not None, resources
        assert (resources.gateway.pool_member is not None) == pooled, resources
    except BaseException:
        remove()
        raise
    return remove


def bare_docker_run(client: Any, image: str, runtime: str) -> Callable[[], None]:
    container = client.containers.run(
        image, ["sleep", "infinity"], detach=True, runtime=None if runtime == "runc" else runtime
    )
    while container.status != "running":
        container.reload()
    return lambda: container.remove(force=True)


def cli_docker_run(client: Any, image: str, runtime: str) -> Callable[[], None]:
    """`docker run -d IMAGE sleep infinity` from the shell (it returns once the container runs)."""
    flags = [] if runtime == "runc" else ["--runtime", runtime]
    done = subprocess.run(
        ["docker", "run", "-d", *flags, image, "sleep", "infinity"],
        capture_output=True,
        text=True,
        check=True,
    )
    return lambda: client.containers.get(done.stdout.strip()).remove(force=True)


def fill_one(manifest: Path, runtime: str) -> None:
    """One warm gateway for the next launch (not timed: the pool is filled ahead of time)."""
    os.environ["BOTTLE_RUNTIME"] = runtime
    lifecycle.pool_fill(manifest, "bench", 1)


def runtimes_here(client: Any, image: str, wanted: str | None) -> list[str]:
    """runc, and runsc where the engine would use it (registered, passes the self-test)."""
    if wanted:
        return [wanted]
    runtimes = client.info().get("Runtimes") or {}
    works = "runsc" in runtimes and gvisor.self_test(client, image, runtimes["runsc"])
    if not works:
        print("gVisor: not measured (no runsc that passes the self-test here)", flush=True)
    return ["runc", "runsc"] if works else ["runc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtime", choices=["runc", "runsc"], help="measure only this one")
    args = parser.parse_args()

    client = connect()
    os.environ.setdefault("BOTTLE_BASE_IMAGE", DEFAULT_BASE_TAG)
    if os.environ["BOTTLE_BASE_IMAGE"] == DEFAULT_BASE_TAG:
        ensure_base_image(client)
    if HOST_CA_BUNDLE.is_file():
        os.environ.setdefault("BOTTLE_CA_BUNDLE", str(HOST_CA_BUNDLE))

    samples: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as scratch:
        os.environ.setdefault("BOTTLE_STATE_DIR", str(Path(scratch) / "state"))
        manifest = Path(scratch) / "bottle.toml"
        manifest.write_text(MANIFEST.format(repo=REPO_ROOT))

        print("preparing: build (or reuse) the agent and bundle images ...", flush=True)
        os.environ["BOTTLE_RUNTIME"] = "runc"
        record = lifecycle.launch(manifest, "bench", cwd=manifest.parent)
        image = client.containers.get(record.name).image.id
        lifecycle.stop(record.slug, remove=True)
        runtimes = runtimes_here(client, image, args.runtime)

        def sample(runtime: str, what: str, work: Callable[..., Any], *more: Any) -> None:
            samples.setdefault((runtime, what), []).append(timed_once(work, *more))

        try:
            for _ in range(args.rounds):
                for runtime in runtimes:
                    sample(runtime, "cold", bottle_launch, manifest, runtime, False)
                    fill_one(manifest, runtime)
                    sample(runtime, "pooled", bottle_launch, manifest, runtime, True)
                    sample(runtime, "docker run", bare_docker_run, client, image, runtime)
                    sample(runtime, "cold cli", cli_launch, manifest, runtime, False)
                    fill_one(manifest, runtime)
                    sample(runtime, "pooled cli", cli_launch, manifest, runtime, True)
                    sample(runtime, "docker run cli", cli_docker_run, client, image, runtime)
        finally:
            lifecycle.pool_drain()

    def median(runtime: str, what: str) -> float:
        return statistics.median(samples[(runtime, what)])

    print(f"image              {image}")
    print(f"rounds             {args.rounds}")
    print(
        f"{'runtime':<8} {'where':<11} {'cold':>9} {'pooled':>9} {'docker run':>11} "
        f"{'cold/run':>9} {'pooled/run':>11}"
    )
    for runtime in runtimes:
        for where, suffix in (("in process", ""), ("shell", " cli")):
            cold, pooled = median(runtime, "cold" + suffix), median(runtime, "pooled" + suffix)
            run = median(runtime, "docker run" + suffix)
            print(
                f"{runtime:<8} {where:<11} {cold * 1000:>6.0f} ms {pooled * 1000:>6.0f} ms "
                f"{run * 1000:>8.0f} ms {cold / run:>8.1f}x {pooled / run:>10.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
