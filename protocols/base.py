"""Protocols: the paper's comparisons as named, runnable units (registry ``PROTOCOLS``).

A protocol declares the paper table it reproduces, the models it compares, the metric keys that make a
(model, seed) cell complete, the paper claims it tests, and the configuration it imposes on its cells
(:meth:`Protocol.settings`: which checkpoint they evaluate; a layer of :func:`protocols.config.resolve`
between the model's presets and the user's overrides).  ``cell(ctx, cell)`` trains and evaluates one
:class:`protocols.pipeline.Cell` and returns its rows; the driver (:mod:`protocols.api`) skips cells whose
identity is already stored, commits new ones, then evaluates the claims on the configurations it ran.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from common.registry import Registry

from .claims import Claim
from common.store import ResultsStore


def code_version() -> str:
    """git describe of the checkout (or the package version outside git)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version
    try:
        return "v" + version("avade-bench")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Context:
    """Everything a protocol run shares across its cells."""

    dataset: Any                     # protocols.datasets.ImageDataset
    budget: str
    store: Optional[ResultsStore]    # the driver's; None in a worker (workers never open the store)
    out_dir: Path                    # run directories live under out_dir/<dataset>/<protocol>/...
    device: torch.device
    resume: bool = False
    cache_dir: Optional[Path] = None  # feature / extractor cache
    progress: bool = True
    version: str = field(default_factory=code_version)
    _extractors: Dict[Any, Any] = field(default_factory=dict)

    def log(self, msg: str) -> None:
        from . import distributed as D
        if D.is_main():
            print(msg, flush=True)


@dataclass
class Protocol:
    name: str
    table: str                                   # e.g. "Table 1"
    description: str
    models: Tuple[str, ...]
    metrics: Tuple[str, ...]                     # keys that make a cell complete
    extras: Tuple[str, ...] = ()                 # keys measured beside them that a stored cell need not have
    #                                              (added later: cells stored before still count as done)
    claims: Tuple[Claim, ...] = ()
    cell: Optional[Callable] = None              # (ctx, cell: pipeline.Cell) -> cells.CellOutput
    model_alias: Dict[str, str] = field(default_factory=dict)  # user model name -> model actually trained
    needs_labels: bool = False
    trains_models: bool = True                   # False: cells are not registered models (Table 7)
    seeds: int = 1                               # default number of seeds
    extractor: Optional[str] = None              # fixed extractor of its metrics (None: eval.extractor)
    floor: bool = False                          # add the real-data floor row ("real") to its sample metrics
    steps_curve: Tuple[int, ...] = ()            # step-based samplers: FID also at these step counts (below default)
    checkpoint: str = "last"                     # which checkpoint every model's cells evaluate: "last" (as the
    #                                              paper) or "val_bpd" (best validation BPD, for every model alike)

    def settings(self) -> Dict[str, Any]:
        """The configuration this protocol imposes on all its cells (a layer of protocols.config.resolve)."""
        return {"eval.select": self.checkpoint}

    def resolve_model(self, name: str) -> str:
        return self.model_alias.get(name, name)


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def register_protocol(p: Protocol) -> Protocol:
    return PROTOCOLS.add(p.name, p, table=p.table, description=p.description)
