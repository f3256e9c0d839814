"""One error mapping for every command line of the suite (``protocols.run``, ``metrics``, ``leaderboard.build``).

Bad input (an unknown name, a bad value, a missing or unreadable file, a corrupt store or checkpoint) is
one line on stderr and exit code 2; ``--debug`` re-raises for the traceback.  Anything else is a bug of
ours: one line naming the exception, exit code 1, and the advice to rerun with ``--debug``.
Ctrl-C is exit code 130.
"""
from __future__ import annotations

import sqlite3
import sys
from typing import Callable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: exceptions that mean "the input is wrong" (the suite's own error classes subclass these)
USER_ERRORS = (ValueError, LookupError, OSError, sqlite3.DatabaseError, EOFError)


def one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    return text.splitlines()[0] if text else type(exc).__name__


def run_main(body: Callable[[], int], *, debug: bool = False,
             interrupted: str = "interrupted", stderr=None) -> int:
    """Run a CLI body and map its exceptions to (one line on stderr, exit code)."""
    err = stderr or sys.stderr
    try:
        return body()
    except KeyboardInterrupt:
        print(interrupted, file=err)
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"error: {one_line(e)}", file=err)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001  a bug: say so in one line
        if debug:
            raise
        print(f"error: internal error ({type(e).__name__}: {one_line(e)}); rerun with --debug and report it",
              file=err)
        return EXIT_FAILED
