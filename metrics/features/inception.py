"""``inception`` extractor: the TF inception-2015-12-05 network from a local file (no download).

Accepted files (the two common ports of the same TF graph):
* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: a state_dict for
  :class:`~metrics.features.inception_net.FIDInceptionV3`;
* clean-fid's / stylegan2-ada's ``inception-2015-12-05.pt``: TorchScript whose ``layers`` maps a
  normalised N x 3 x 299 x 299 batch to N x 2048 (x 1 x 1) pool3 features and whose ``output`` is
  the 1008-way linear layer (as clean-fid's ``InceptionV3W`` uses it).
The path comes from the argument or ``$AVADE_INCEPTION``.

Preprocessing is clean-fid's ``clean`` mode: images in [0, 1] are scaled to [0, 255], resized to
299 x 299 per channel with PIL bicubic in float ('F') mode without re-quantisation, clipped to
[0, 255], then normalised as (x - 128) / 128 (the TF graph's own input scaling; used for both file
formats).  Grey images are replicated to 3 channels.  Outputs: pool3 (2048-d) for FID, KID, PRD,
prdc; the 1008-way logits *without* the output bias for IS (OpenAI / stylegan2-ada convention; IS
therefore uses the clean resize too, not the TF bilinear one).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from PIL import Image

from common.defaults import INCEPTION_ENV

from ..cache import hash_file
from .inception_net import FIDInceptionV3

ENV = INCEPTION_ENV        # AVADE_INCEPTION (common/defaults.py: every CLI's paths)
URLS = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt")
SIZE = 299
PREPROCESSING = "clean: PIL bicubic float per channel to 299, clip [0,255], (x-128)/128"


def resolve_weights(path: Optional[str | os.PathLike]) -> Path:
    """The weights file from ``path`` or $AVADE_INCEPTION; a one-line error naming where to get it."""
    where = path or os.environ.get(ENV) or None
    if where is None or not Path(where).is_file():
        said = f"{where!s} does not exist" if where is not None else f"no path given and ${ENV} is unset"
        raise FileNotFoundError(f"Inception weights not found ({said}): download {URLS[0]} (pytorch-fid) or "
                                f"{URLS[1]} (clean-fid) and pass its path with --inception-weights or ${ENV}")
    return Path(where)


@lru_cache(maxsize=8)
def _file_hash(path: str, size: int, mtime: float) -> str:
    return hash_file(path)


def _load_network(path: Path) -> Tuple[torch.nn.Module, str]:
    """(module, format); TorchScript is tried first, then a pytorch-fid state_dict."""
    try:
        return torch.jit.load(str(path), map_location="cpu").eval(), "torchscript"
    except Exception:  # noqa: BLE001 -- not TorchScript (or not readable): try the state_dict format
        pass
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = FIDInceptionV3()
        net.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001 -- any failure means "not a file of either format"
        raise ValueError(f"{path} is neither clean-fid's TorchScript inception-2015-12-05.pt nor pytorch-fid's "
                         f"pt_inception-2015-12-05-6726825d.pth state_dict ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:200]})") from None
    return net.eval(), "pytorch-fid"


def clean_resize(x255: np.ndarray) -> np.ndarray:
    """One C x H x W float image in [0, 255] -> C x 299 x 299 (PIL bicubic, float mode, clipped)."""
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(c, dtype=np.float32))
                        .resize((SIZE, SIZE), resample=Image.BICUBIC)) for c in x255]
    return np.stack(chans).clip(0, 255)


class InceptionExtractor:
    """pool3 features and bias-free logits of images in [0, 1] (N x C x H x W, C in {1, 3})."""

    name = "inception"

    def __init__(self, path: Optional[str | os.PathLike] = None, *, device: Optional[str | torch.device] = None,
                 resize_workers: int = 4):
        self.path = resolve_weights(path)
        st = self.path.stat()
        self.weights_hash = _file_hash(str(self.path.resolve()), st.st_size, st.st_mtime)
        self.net, self.format = _load_network(self.path)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.net.to(self.device)
        self.resize_workers = resize_workers

    def identity(self) -> dict:
        """Everything that determines the features (for the feature cache and result rows)."""
        return {"extractor": self.name, "weights_sha256": self.weights_hash, "format": self.format,
                "preprocessing": PREPROCESSING, "logits": "1008-way, no output bias"}

    @property
    def id(self) -> str:
        return f"inception-{self.weights_hash[:12]}"

    def _prepare(self, x_unit: torch.Tensor) -> torch.Tensor:
        if x_unit.ndim != 4 or x_unit.shape[1] not in (1, 3):
            raise ValueError(f"Inception needs N x C x H x W images with C in (1, 3), got {tuple(x_unit.shape)}")
        x255 = (x_unit.detach().float().cpu() * 255).numpy()
        with ThreadPoolExecutor(max(1, self.resize_workers)) as pool:
            big = torch.from_numpy(np.stack(list(pool.map(clean_resize, x255))))
        if big.shape[1] == 1:
            big = big.repeat(1, 3, 1, 1)
        return ((big - 128) / 128).to(self.device)

    @torch.no_grad()
    def embed(self, x_unit: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """One batch -> (N x 2048 pool3 features, N x 1008 logits without bias), float32 on CPU."""
        x = self._prepare(x_unit)
        if self.format == "torchscript":
            feats = self.net.layers(x).reshape(x.shape[0], -1)
            weight = self.net.output.weight
        else:
            feats, weight = self.net.pool3(x), self.net.fc.weight
        if feats.shape[1] != 2048:
            raise ValueError(f"{self.path}: pool3 features have {feats.shape[1]} dimensions, expected 2048")
        return feats.float().cpu(), (feats @ weight.T).float().cpu()
