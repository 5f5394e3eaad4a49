"""``python -m bottle_engine.bundle``: the bundle container's entry point (the supervisor)."""

import sys

from bottle_engine.bundle.supervisor import main

sys.exit(main())
