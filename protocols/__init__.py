"""Protocols: the paper's tables as runnable comparisons, the one trainer, datasets, configuration, the cell
scheduler and its executors (the results store they write is ``common.store``, below this package).

``import protocols`` is light; the registries and
the driver load on first use: ``from protocols.api import run_protocol`` (or ``protocols.run_protocol``,
``protocols.PROTOCOLS``) has every model, metric, dataset and protocol registered.
"""
from typing import Any

_LAZY = {"run_protocol": "api", "plan": "api", "ProtocolResult": "api", "PROTOCOLS": "api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
