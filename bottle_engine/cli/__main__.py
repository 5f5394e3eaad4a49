import sys

from bottle_engine.cli import main

sys.exit(main())
