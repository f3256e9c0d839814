"""Content hashes and an on-disk cache of arrays keyed by everything that produced them.

STYLE habit 4, after stylegan2-ada-pytorch ``metrics/metric_utils.py``: the key is the md5 of a
canonical JSON of every input (data or checkpoint hash, extractor id and weights hash,
preprocessing, sample count, seed); the value is an ``.npz`` written atomically (temp file in
the same folder, then ``os.replace``), so a killed run never leaves a half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

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


def atomic_save_npz(path: Path, arrays: Arrays) -> None:
    """Write ``arrays`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cached_arrays(cache_dir: Optional[str | Path], kind: str, key: dict,
                  compute: Callable[[], Arrays]) -> Arrays:
    """Return ``compute()``, reusing ``<cache_dir>/<kind>-<hash(key)>.npz`` when it exists.

    ``cache_dir=None`` disables caching.  The key is stored beside the arrays (``__key__``) so a
    cache file says what produced it.
    """
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{kind}-{hash_key(key)}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k != "__key__"}
    arrays = compute()
    atomic_save_npz(path, {**arrays, "__key__": np.array(json.dumps(key, sort_keys=True, default=str))})
    return arrays
