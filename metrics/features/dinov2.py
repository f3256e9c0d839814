"""``dinov2`` extractor: DINOv2 ViT-S/14, ViT-B/14 or ViT-L/14 CLS features through timm, from a local file.

FD on these features is FD_DINOv2 (Stein et al., NeurIPS 2023, arXiv:2306.04675; layer6ai-labs/dgm-eval
``dgm_eval/models/dinov2.py``; reported by NVlabs/edm2 with ViT-L/14).  Accepted file: Meta's backbone
checkpoint (``dinov2_vits14_pretrain.pth`` / ``dinov2_vitl14_pretrain.pth``, a state_dict loaded with
``weights_only=True``) or timm's state_dict of the same network; the architecture (width, depth) is read
from the file's shapes, and its sha256 says whether it is the published file (metrics/features/weights.py).

Network: ``timm`` ``vit_{small,base,large}_patch14_dinov2`` built at 224 x 224 (``num_classes=0``: the
output is the final-LayerNorm CLS token, Meta's ``x_norm_clstoken``).  The checkpoint's 37 x 37 position
embedding is resampled once to 16 x 16 the way Meta's ``interpolate_pos_encoding`` does it at every call
for a 224 input (bicubic, ``scale_factor = 16.1 / 37``, no antialiasing), so the features are those of
the torch.hub model dgm-eval uses, not of timm's own (antialiased, size-based) resampling.

Preprocessing, dgm-eval's default (``clean_resize=False``): each image as an 8-bit PIL image (levels
mapped to round(x 255 / (L - 1)), as when saved to a file), converted to RGB, resized to 224 x 224 with
PIL bicubic (torchvision ``Resize((224, 224), BICUBIC)`` on a PIL image), divided by 255 and normalised
with the ImageNet mean and std.  Grey images are resized once and replicated (bit-identical to resizing
the RGB conversion: PIL resizes each band alike).  tests/test_metrics_modern.py checks it against
torchvision's transforms on PNG files read as dgm-eval reads them.
"""
from __future__ import annotations

import math
import os
import re
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import weights as W

SIZE = 224
PATCH = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHS = {384: ("vits14", "vit_small_patch14_dinov2"), 768: ("vitb14", "vit_base_patch14_dinov2"),
         1024: ("vitl14", "vit_large_patch14_dinov2")}
PREPROCESSING = ("dgm-eval: 8-bit PIL RGB, PIL bicubic resize to 224x224, /255, ImageNet mean/std; "
                 "pos-embed 37->16 bicubic scale 16.1/37 no antialias (Meta interpolate_pos_encoding)")


def to_uint8(x_unit: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] -> 8-bit display values round(255 u) (levels x / (L - 1) -> round(x 255 / (L - 1)))."""
    return np.rint(x_unit.detach().float().cpu().numpy() * 255).clip(0, 255).astype(np.uint8)


def pil_image(c_h_w: np.ndarray) -> Image.Image:
    """One uint8 C x H x W array (C in 1, 3) as a PIL image ('L' or 'RGB')."""
    return Image.fromarray(c_h_w[0] if c_h_w.shape[0] == 1 else c_h_w.transpose(1, 2, 0))


def resize_rgb(c_h_w: np.ndarray, size: int) -> np.ndarray:
    """PIL bicubic resize of one uint8 image to size x size, as uint8 H x W x 3 (grey replicated after)."""
    out = np.asarray(pil_image(c_h_w).resize((size, size), Image.BICUBIC))
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out


def normalise(hwc_uint8: np.ndarray, mean, std) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float32: x / 255 then (x - mean) / std per channel."""
    x = torch.from_numpy(hwc_uint8).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def preprocess(x_unit: torch.Tensor) -> torch.Tensor:
    """N x C x H x W images in [0, 1] -> the network's N x 3 x 224 x 224 input (see the module docstring)."""
    if x_unit.ndim != 4 or x_unit.shape[1] not in (1, 3):
        raise ValueError(f"DINOv2 needs N x C x H x W images with C in (1, 3), got {tuple(x_unit.shape)}")
    return normalise(np.stack([resize_rgb(im, SIZE) for im in to_uint8(x_unit)]), IMAGENET_MEAN, IMAGENET_STD)


def resample_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """1 x (1 + M^2) x D -> 1 x (1 + grid^2) x D as Meta's ``interpolate_pos_encoding`` does for a grid x grid
    input: bicubic with scale factor (grid + 0.1) / M, align_corners False, no antialiasing, in float32."""
    m = int(round(math.sqrt(pos_embed.shape[1] - 1)))
    if m * m != pos_embed.shape[1] - 1:
        raise ValueError(f"position embedding of {pos_embed.shape[1] - 1} patches is not a square grid")
    if m == grid:
        return pos_embed.float()
    cls, patches = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    scale = (grid + 0.1) / m
    grid_map = patches.reshape(1, m, m, -1).permute(0, 3, 1, 2)
    out = F.interpolate(grid_map, scale_factor=(scale, scale), mode="bicubic", align_corners=False)
    if out.shape[-1] != grid:
        raise ValueError(f"resampled position grid is {out.shape[-1]}, expected {grid}")
    return torch.cat([cls, out.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


def _read_state(path) -> dict:
    """A DINOv2 state_dict from Meta's or timm's file (``model``/``state_dict`` wrappers unwrapped)."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or "pos_embed" not in state or "patch_embed.proj.weight" not in state:
        raise ValueError("no pos_embed / patch_embed.proj.weight: not a DINOv2 ViT state_dict")
    return {k: v for k, v in state.items() if k != "mask_token"}


def build_network(state: dict) -> Tuple[torch.nn.Module, str, int]:
    """(timm model at 224 with the file's weights, arch name, depth); the file decides width and depth."""
    import timm
    width = state["patch_embed.proj.weight"].shape[0]
    if width not in ARCHS or state["patch_embed.proj.weight"].shape[-1] != PATCH:
        raise ValueError(f"embedding width {width} / patch {state['patch_embed.proj.weight'].shape[-1]} is not "
                         "ViT-S/14, ViT-B/14 or ViT-L/14 (ViT-g/14 is not supported)")
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    arch, timm_name = ARCHS[width]
    net = timm.create_model(timm_name, pretrained=False, img_size=SIZE, num_classes=0, depth=depth)
    state = {**state, "pos_embed": resample_pos_embed(state["pos_embed"], SIZE // PATCH)}
    net.load_state_dict(state, strict=True)
    return net.eval(), arch, depth


class DINOv2Extractor:
    """DINOv2 CLS features (no logits) of images in [0, 1] (N x C x H x W, C in {1, 3})."""

    name = "dinov2"

    def __init__(self, path: Optional[str | os.PathLike] = None, *, device: Optional[str | torch.device] = None):
        self.path = W.resolve("dinov2", path)
        W.require("timm", self.name)
        self.weights_hash, self.published = W.file_identity(self.path)
        try:
            self.net, self.arch, self.depth = build_network(_read_state(self.path))
        except Exception as e:  # noqa: BLE001 -- any failure means "not a DINOv2 checkpoint we can read"
            raise W.wrong_file("dinov2", self.path, e) from None
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.net.to(self.device)

    def identity(self) -> dict:
        """Everything that determines the features (for the feature cache and result rows)."""
        return {"extractor": self.name, "arch": self.arch, "depth": self.depth, "weights_sha256": self.weights_hash,
                "weights": self.published.file if self.published else W.UNPUBLISHED,
                "preprocessing": PREPROCESSING, "network": "timm"}

    @property
    def id(self) -> str:
        mark = "" if self.published else "-unpublished"
        return f"dinov2-{self.arch}{mark}-{self.weights_hash[:12]}"

    @torch.no_grad()
    def embed(self, x_unit: torch.Tensor) -> Tuple[torch.Tensor, None]:
        """One batch -> (N x D CLS features, None), float32 on CPU."""
        return self.net(preprocess(x_unit).to(self.device)).float().cpu(), None
