"""Atomic file writes: the one helper behind checkpoints, caches, configs and the leaderboard page.

A write goes to a temporary file in the destination's folder and is moved into place with
``os.replace`` (atomic on POSIX), so a reader, or a process killed mid-write, never sees half a file.
After stylegan2-ada-pytorch ``metrics/metric_utils.py`` (temp file, then rename).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

Payload = Union[bytes, str, Callable[[BinaryIO], object]]


def atomic_write(path: Union[str, os.PathLike], payload: Payload) -> Path:
    """Write ``payload`` (bytes, text as UTF-8, or a callable given the open binary file) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(payload):
                payload(f)
            else:
                f.write(payload.encode("utf-8") if isinstance(payload, str) else payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
