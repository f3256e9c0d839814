"""``clip`` extractor: CLIP ViT-L/14@336 image embeddings through open_clip, from a local file (CMMD's space).

CMMD (Jayasumana et al., CVPR 2024, arXiv:2401.09603; google-research ``cmmd/embedding.py``) is the MMD
of metrics/mmd.py on these embeddings.  Accepted file: OpenAI's ``ViT-L-14-336px.pt`` (a TorchScript
archive; its state_dict is read) or a plain state_dict with OpenAI's key names (open_clip's conversion
of the same weights).  ``open_clip.model.build_model_from_openai_state_dict`` builds the model from the
file's shapes, then it runs in float32; the sha256 says whether it is the published file.

Preprocessing, the CLIP processor (OpenAI's ``preprocess``, open_clip's ``image_transform(336)``,
Hugging Face's ``CLIPImageProcessor``): each image as an 8-bit PIL image, its shorter side resized to 336
with PIL bicubic (torchvision's ``Resize(336)`` sizes), centre-cropped to 336 x 336 (``CenterCrop``),
divided by 255, replicated to RGB when grey, normalised with CLIP's mean and std.  On square images (every
dataset here) this is exactly CMMD's own reader (``cmmd/io_util.py``: centre square crop, then PIL bicubic
to 336); on other shapes the reader crops before resizing and the processor after.  Output:
``encode_image(x, normalize=True)``, L2-normalised as in CMMD (scenic's CLIP normalises its embeddings).  tests/test_metrics_modern.py checks the input against open_clip's
transform on PNG files.
"""
from __future__ import annotations

import os
import warnings
from typing import Optional, Tuple

import numpy as np
import torch
from PIL import Image

from . import weights as W
from .dinov2 import normalise, pil_image, to_uint8

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESSING = "CLIP processor: 8-bit PIL, shorter side PIL bicubic to image size, centre crop, /255, CLIP mean/std"


def resize_crop(c_h_w: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` (PIL bicubic; the longer int(size * long / short), as torchvision's Resize),
    then the centre size x size (torchvision's CenterCrop offsets), as uint8 H x W x 3."""
    im = pil_image(c_h_w)
    w, h = im.size
    short, long = min(w, h), max(w, h)
    other = int(size * long / short)
    new_w, new_h = (size, other) if w <= h else (other, size)
    if (new_w, new_h) != (w, h):
        im = im.resize((new_w, new_h), Image.BICUBIC)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    out = np.asarray(im.crop((left, top, left + size, top + size)))
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out


def preprocess(x_unit: torch.Tensor, size: int) -> torch.Tensor:
    """N x C x H x W images in [0, 1] -> N x 3 x size x size CLIP input."""
    if x_unit.ndim != 4 or x_unit.shape[1] not in (1, 3):
        raise ValueError(f"CLIP needs N x C x H x W images with C in (1, 3), got {tuple(x_unit.shape)}")
    return normalise(np.stack([resize_crop(im, size) for im in to_uint8(x_unit)]), CLIP_MEAN, CLIP_STD)


def _read_state(path) -> dict:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)     # torch.jit.load is deprecated, OpenAI's file is one
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception:  # noqa: BLE001 -- not TorchScript: a plain state_dict
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "visual.proj" not in state:
        raise ValueError("no visual.proj: not an OpenAI-format CLIP ViT state_dict")
    return dict(state)


def build_network(state: dict) -> Tuple[torch.nn.Module, str, int]:
    """(float32 open_clip CLIP model, arch label, image size) from an OpenAI-format state_dict."""
    from open_clip.model import build_model_from_openai_state_dict
    net = build_model_from_openai_state_dict(state, cast_dtype=None).float().eval()
    v = net.visual
    size = int(v.image_size[0] if isinstance(v.image_size, (tuple, list)) else v.image_size)
    patch = int(v.patch_size[0] if isinstance(v.patch_size, (tuple, list)) else v.patch_size)
    width, layers = int(v.conv1.weight.shape[0]), len(v.transformer.resblocks)
    return net, f"ViT-w{width}-l{layers}/{patch}@{size}", size


class CLIPExtractor:
    """L2-normalised CLIP image embeddings (no logits) of images in [0, 1]."""

    name = "clip"

    def __init__(self, path: Optional[str | os.PathLike] = None, *, device: Optional[str | torch.device] = None):
        self.path = W.resolve("clip", path)
        W.require("open_clip", self.name)
        self.weights_hash, self.published = W.file_identity(self.path)
        try:
            self.net, self.arch, self.size = build_network(_read_state(self.path))
        except Exception as e:  # noqa: BLE001 -- any failure means "not a CLIP checkpoint we can read"
            raise W.wrong_file("clip", self.path, e) from None
        if self.published:
            self.arch = self.published.arch
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.net.to(self.device)

    def identity(self) -> dict:
        return {"extractor": self.name, "arch": self.arch, "weights_sha256": self.weights_hash,
                "weights": self.published.file if self.published else W.UNPUBLISHED,
                "preprocessing": PREPROCESSING, "network": "open_clip", "normalize": "l2"}

    @property
    def id(self) -> str:
        mark = "" if self.published else "-unpublished"
        return f"clip{mark}-{self.weights_hash[:12]}"

    @torch.no_grad()
    def embed(self, x_unit: torch.Tensor) -> Tuple[torch.Tensor, None]:
        """One batch -> (N x D unit-norm embeddings, None), float32 on CPU."""
        x = preprocess(x_unit, self.size).to(self.device)
        return self.net.encode_image(x, normalize=True).float().cpu(), None
