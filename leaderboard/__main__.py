"""``python -m leaderboard`` is the same as ``python -m leaderboard.build``."""
import sys

from .build import main

sys.exit(main())
