"""`python -m tests.lsp.fake_server --state FILE [...]`: the real language server over stdio,
built around an engine whose lifecycle is `FakeLifecycle(FILE)`. Tests only: the product's
`bottle-lsp` always builds the real engine."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bottle_lsp.engine import Engine
from bottle_lsp.server import create_server
from tests.lsp.fake_engine import FakeLifecycle


def main() -> int:
    parser = argparse.ArgumentParser(prog="fake_server")
    parser.add_argument("--state", type=Path, required=True, help="the fake bottles' JSON file")
    parser.add_argument("--log-file", required=True)
    parser.add_argument("--debounce", type=float, default=0.05)
    parser.add_argument("--bottles-max-age", type=float, default=5.0)
    parser.add_argument("--activity-interval", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(
        filename=args.log_file,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    server = create_server(
        Engine(FakeLifecycle(args.state)),
        debounce_seconds=args.debounce,
        bottles_max_age=args.bottles_max_age,
        activity_interval=args.activity_interval,
    )
    server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
