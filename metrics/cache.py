"""Content hashes and an on-disk cache of arrays keyed by everything that produced them.

STYLE habit 4, after stylegan2-ada-pytorch ``metrics/metric_utils.py``: the key is the md5 of a
canonical JSON of every input (data or checkpoint hash, extractor id and weights hash,
preprocessing, sample count, seed); the value is an ``.npz`` written atomically with
``common.io.atomic_write`` (temp file in the same folder, then ``os.replace``), so a killed run
never leaves a half-written entry.  An entry that cannot be read (empty, truncated, not an .npz,
pickled objects, or stamped with another key) is a miss: one warning names the file, the arrays are
recomputed and the entry overwritten.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from common.io import atomic_write

Arrays = Dict[str, np.ndarray]


def hash_array(x) -> str:
    """sha256 of an array's dtype, shape and bytes (numpy or torch)."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


def hash_file(path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def hash_module(module: torch.nn.Module) -> str:
    """sha256 of a module's class, config repr and every state_dict tensor: a checkpoint hash."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    h.update(repr(getattr(module, "cfg", None)).encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(hash_array(t).encode())
    return h.hexdigest()


def hash_key(key: dict) -> str:
    """md5 of the canonical JSON of ``key`` (sorted keys; values must be JSON-serialisable)."""
    return hashlib.md5(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _canonical(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def warn_corrupt(path: Path, e: BaseException, what: str = "recomputing and overwriting it") -> None:
    """One warning naming a cache file that could not be used (the caller then recomputes it)."""
    reason = (str(e).splitlines() or [""])[0][:200]
    warnings.warn(f"cache file {path} is corrupt or unreadable ({type(e).__name__}: {reason}); {what}",
                  RuntimeWarning, stacklevel=3)


def _load_entry(path: Path, key: dict) -> Optional[Arrays]:
    """The arrays of a cache entry, or None (after a warning) when it cannot be used."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:   # our handle: closed on any error
            arrays = {k: z[k] for k in z.files}
        if str(arrays.pop("__key__", "")) != _canonical(key):
            raise ValueError("its stored __key__ is missing or belongs to other inputs")
        return arrays
    except Exception as e:  # noqa: BLE001 -- any failure to read means "not a usable entry"
        warn_corrupt(path, e)
        return None


def cached_arrays(cache_dir: Optional[str | Path], kind: str, key: dict,
                  compute: Callable[[], Arrays]) -> Arrays:
    """Return ``compute()``, reusing ``<cache_dir>/<kind>-<hash(key)>.npz`` when it exists.

    ``cache_dir=None`` disables caching.  The key is stored beside the arrays (``__key__``) so a
    cache file says what produced it; an unusable entry is recomputed (see the module docstring).
    """
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{kind}-{hash_key(key)}.npz"
    if path.exists():
        arrays = _load_entry(path, key)
        if arrays is not None:
            return arrays
    arrays = compute()
    stamp = np.array(_canonical(key))
    atomic_write(path, lambda f: np.savez(f, **arrays, __key__=stamp))
    return arrays
