"""Generative models of the AV-ADE paper and its baselines (registry: ``MODELS``).

Importing this package registers every model. ``models`` imports only torch and its own
files: it knows no dataset, metric, store or page.
"""
from .base import (MODELS, Batch, DataSpec, GenerativeModel, Stage, bits_per_dim, build_model, default_config,
                   dequantize, quantize, register_model, to_unit)
from common.registry import Registry, UnknownNameError

from . import zoo  # noqa: F401,E402  (registers the models)

__all__ = ["MODELS", "Batch", "DataSpec", "GenerativeModel", "Stage", "Registry", "UnknownNameError",
           "bits_per_dim", "build_model", "default_config", "dequantize", "quantize", "register_model", "to_unit"]
