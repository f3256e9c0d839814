"""One error mapping for every command line of the suite (``protocols.run``, ``metrics``, ``leaderboard.build``).

Bad input (an unknown name, a bad value, a missing or unreadable file, a corrupt store or checkpoint) is
one line on stderr and exit code 2; ``--debug`` re-raises for the traceback.  Anything else is a bug of
ours: one line naming the exception, exit code 1, and the advice to rerun with ``--debug``.
Ctrl-C is exit code 130.  :class:`Parser` gives argparse's own errors (an unknown flag, a missing required one,
a bad type) the same form: one line, exit code 2, an unknown flag with the closest valid one.
"""
from __future__ import annotations

import argparse
import difflib
import math
import re
import sqlite3
import sys
from typing import Callable, List

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: exceptions that mean "the input is wrong" (the suite's own error classes subclass these)
USER_ERRORS = (ValueError, LookupError, OSError, sqlite3.DatabaseError, EOFError)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit code 2 (its default prints the usage too), an
    unknown flag named with the closest valid one (``difflib``), a bad number with the range it must be in."""

    def error(self, message):
        print(f"error: {self._explain(message)} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def _explain(self, message: str) -> str:
        m = re.match(r"unrecognized arguments: (.*)", message)
        if not m:
            return message.replace("the following arguments are required:", "missing required option(s):")
        hints = [f"{a} (did you mean {close[0]}?)" if close else a
                 for a in m.group(1).split() for close in [self.closest(a)]]
        return f"unknown option(s): {' '.join(hints)}"

    def closest(self, arg: str) -> List[str]:
        if not arg.startswith("-"):
            return []
        flags = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        return difflib.get_close_matches(arg.partition("=")[0], flags, n=1, cutoff=0.7)


def at_least(low: float, kind: Callable = int) -> Callable[[str], float]:
    """An argparse ``type`` accepting numbers >= ``low`` (a bad one: argparse's one-line error naming the rule)."""
    def parse(text: str):
        value = kind(text)          # a ValueError: argparse's "invalid int value: 'x'"
        if not (value >= low and math.isfinite(value)):        # also refuses NaN and infinity
            raise argparse.ArgumentTypeError(f"must be a number >= {low:g}, not {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


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
