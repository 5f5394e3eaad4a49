"""``python -m bottle_engine.bundle.gitgate``: the git gate service of the bundle."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.gitgate.server import serve
from bottle_engine.bundle.service_cli import GIT_GATE
from bottle_engine.errors import BottleError
from bottle_engine.limits import GIT_GATE_PUSH_CPU_SECONDS


def main(argv: Sequence[str] | None = None) -> int:
    parser = GIT_GATE.parser(
        description="Serve the bottle's git upstreams at git://LISTEN:PORT/<name>, "
        "gating pushes by branch policy and secret scanning.",
    )
    parser.add_argument(
        "--repos-dir",
        type=Path,
        help="where the gate keeps its mirrors (default: git-gate/ in the bottle's state dir, "
        "so that big repositories fit; each is made afresh at every start)",
    )
    parser.add_argument(
        "--push-cpu-seconds",
        type=int,
        default=GIT_GATE_PUSH_CPU_SECONDS,
        help="CPU seconds each process of one push may take (default: %(default)s)",
    )
    args = GIT_GATE.parse_and_wait(parser, argv)
    try:
        if args.wait_for_config and not BundleConfig.load(args.config).git:
            return 0  # a warm pool member's bottle without git: never listen
        return serve(
            args.config,
            args.listen,
            args.port,
            args.repos_dir,
            args.allowed_client,
            args.push_cpu_seconds,
        )
    except BottleError as exc:
        sys.stderr.write(f"git gate: error: {exc}\n")
        return 1
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"git gate: error: cannot read the bundle config {args.config}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
