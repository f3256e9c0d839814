"""Imports every module that registers models (kept separate so each family owns its file)."""
from . import ade  # noqa: F401  gan, vae, vade, avgde, avade (+ refinements, conditional)
from . import flow_models  # noqa: F401  realnvp, glow, flowgan
from . import vdm  # noqa: F401  vdm
from . import template  # noqa: F401  template (independent pixels: the file to copy for a new model)
