"""The defaults and environment variables every command line reads, in one place (README "Glossary").

Modelled on torch-fidelity's ``defaults.py``: one table for the CLIs and the Python API.  The same flag means the
same thing in every command, and a flag left out falls back to its environment variable, then to the default, so
``python -m leaderboard.build`` with no flags reads the store that ``python -m protocols.run`` wrote in the same
environment.

    flag                  environment variable           default                 what
    --results             $AVADE_RESULTS                 results/results.sqlite  the results store (SQLite)
    --runs                $AVADE_RUNS                    runs                    run directories (checkpoints, samples)
    --site                $AVADE_SITE                    leaderboard/site        the leaderboard page's folder
    (none)                $AVADE_CACHE                   <runs>/cache            feature and extractor cache
    --data-root           $AVADE_DATA                    (none)                  where datasets live
    --inception-weights   $AVADE_INCEPTION               (none)                  the Inception-v3 file of FID / IS
    --weights             $AVADE_DINOV2 / $AVADE_CLIP    (none)                  DINOv2 / CLIP files (python -m metrics)

Old names kept for one release: ``protocols.run --out`` (now ``--runs``) and ``leaderboard.build --out`` (now
``--site``); each prints a one-line note (:func:`add_deprecated`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

RESULTS_ENV, RUNS_ENV, SITE_ENV, CACHE_ENV = "AVADE_RESULTS", "AVADE_RUNS", "AVADE_SITE", "AVADE_CACHE"
DATA_ENV, INCEPTION_ENV = "AVADE_DATA", "AVADE_INCEPTION"
RESULTS, RUNS, SITE = Path("results/results.sqlite"), Path("runs"), Path("leaderboard/site")

#: flag -> help, the same words in every command that has the flag
HELP = {"--results": f"results store (SQLite) [${RESULTS_ENV}, else {RESULTS}]",
        "--runs": f"run directories: checkpoints, samples, config.json [${RUNS_ENV}, else {RUNS}]",
        "--site": f"leaderboard page folder (index.html, img/) [${SITE_ENV}, else {SITE}]",
        "--data-root": f"where datasets live [${DATA_ENV}]",
        "--inception-weights": f"local Inception-v3 weights file [${INCEPTION_ENV}]"}


def _env_or(name: str, default: Path, given: Optional[os.PathLike | str] = None) -> Path:
    return Path(given) if given else Path(os.environ.get(name) or default)


def results_path(given: Optional[os.PathLike | str] = None) -> Path:
    """``given``, else $AVADE_RESULTS, else results/results.sqlite."""
    return _env_or(RESULTS_ENV, RESULTS, given)


def runs_dir(given: Optional[os.PathLike | str] = None) -> Path:
    """``given``, else $AVADE_RUNS, else runs/."""
    return _env_or(RUNS_ENV, RUNS, given)


def site_dir(given: Optional[os.PathLike | str] = None) -> Path:
    """``given``, else $AVADE_SITE, else leaderboard/site."""
    return _env_or(SITE_ENV, SITE, given)


def cache_dir(runs: os.PathLike | str) -> Path:
    """Feature and extractor cache: $AVADE_CACHE (share it between run folders), else <runs>/cache."""
    return Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else Path(runs) / "cache"


def add_path_flag(parser, flag: str, dest: Optional[str] = None, help: Optional[str] = None) -> None:
    """Add ``flag`` (one of :data:`HELP`) with its common help; default None: resolved by the functions above at
    run time, so the environment is read when the command runs, not when it is imported."""
    kw = {"dest": dest} if dest else {}
    parser.add_argument(flag, type=Path, default=None, help=help or HELP[flag], metavar=flag[2:].upper(), **kw)


class _Deprecated(argparse.Action):
    def __init__(self, option_strings, dest, new: str = "", **kw):
        super().__init__(option_strings, dest, **kw)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated and goes in the next release; use {self.new}", file=sys.stderr,
              flush=True)
        setattr(namespace, self.dest, values)


def add_deprecated(parser, old: str, new: str, dest: str) -> None:
    """``old`` as a hidden alias of ``new`` (same ``dest``) that prints a one-line note when used."""
    parser.add_argument(old, dest=dest, type=Path, action=_Deprecated, new=new, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
