"""The one progress bar of the suite (tqdm on stderr), for every loop that can run longer than a few seconds.

On a terminal it redraws every 0.1 s and is cleared at the end; in a log file it writes a line at least every
3 s (``miniters=1`` keeps tqdm from stretching the interval when steps slow down: under heavy load one 5-step
stall stretched a 5 s interval to 14 s) and keeps the final one.  ``delay`` hides it for loops that end sooner.
No step of the suite stays silent for more than 10 seconds.
"""
from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, *, enabled: bool = True, unit: str = "it", delay: float = 0.0,
                 initial: int = 0, leave: bool = None):
    from tqdm.auto import tqdm
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                leave=(not tty) if leave is None else leave, dynamic_ncols=True, mininterval=0.1 if tty else 3.0,
                miniters=1, delay=delay, initial=initial)
