"""Image inputs of the suite: arrays, tensors, folders, .npz files and models -> uint8 levels.

Conventions (models/base.py): real data are uint8 N x C x H x W with values 0..levels-1; model
samples are floats in u-space [0, 1] and become levels by ``models.base.quantize`` (floor(u L)),
which also maps display floats x / (L - 1) back to x exactly; images given to a feature
extractor are ``models.base.to_unit`` floats x / (L - 1) in [0, 1], for real and generated alike.

Files.  Image files (png, jpg, bmp, ...) hold 8-bit display intensities v; they are mapped to the
dataset's levels by round(v (L - 1) / 255), the inverse of saving x as round(x 255 / (L - 1)) (the
identity for L = 256).  An ``.npz`` holds the images under ``x`` (or ``images``, or its only
array), uint8 levels or u-space floats, N x C x H x W (N x H x W x C is accepted when the last
axis has 1 or 3 entries), and optionally labels under ``y``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from PIL import Image

from models.base import quantize, to_unit

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def check_uint8(x: torch.Tensor, levels: int, what: str = "images") -> torch.Tensor:
    if x.ndim != 4:
        raise ValueError(f"{what} must be N x C x H x W, got shape {tuple(x.shape)}")
    if x.numel() and int(x.max()) >= levels:
        raise ValueError(f"{what} hold value {int(x.max())} but the data have levels={levels} (0..{levels - 1}); "
                         "pass the dataset's number of intensity levels")
    return x


def _channels_first(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        return a.transpose(0, 3, 1, 2)
    return a


def to_levels(images, levels: int, what: str = "images") -> torch.Tensor:
    """uint8 levels (checked) or u-space floats (quantised) -> uint8 N x C x H x W tensor."""
    if isinstance(images, (str, Path)):
        return load_images(images, levels)[0]
    x = torch.as_tensor(_channels_first(np.asarray(images)) if not isinstance(images, torch.Tensor) else images)
    if x.dtype == torch.uint8:
        return check_uint8(x.cpu(), levels, what)
    if not x.is_floating_point():
        raise ValueError(f"{what} must be uint8 levels or floats in [0, 1], got dtype {x.dtype}")
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError(f"float {what} must lie in [0, 1] (u-space samples), got range "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return check_uint8(quantize(x.detach().cpu(), levels), levels, what)


def as_unit(images, levels: int) -> torch.Tensor:
    """Images for a feature extractor: uint8 levels -> x / (L - 1); floats are taken as already in [0, 1]."""
    x = torch.as_tensor(images)
    return to_unit(x, levels) if x.dtype == torch.uint8 else x.float()


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def load_folder(path: Path, levels: int) -> torch.Tensor:
    files = sorted(p for p in Path(path).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {path}")
    arrays = [_read_image(p) for p in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images under {path} differ in size/channels {sorted(shapes)[:3]}: resize them to one shape")
    v = np.stack(arrays).astype(np.float64)
    return torch.from_numpy(np.rint(v * (levels - 1) / 255).astype(np.uint8))


def load_npz(path: Path, levels: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    with np.load(path, allow_pickle=False) as z:
        name = next((k for k in ("x", "images") if k in z.files), z.files[0] if len(z.files) == 1 else None)
        if name is None:
            raise ValueError(f"{path}: no images found; store them under key 'x' (keys present: {z.files})")
        x = to_levels(z[name], levels, f"{path}[{name}]")
        y = torch.as_tensor(z["y"]).long() if "y" in z.files else None
    if y is not None and len(y) != len(x):
        raise ValueError(f"{path}: {len(x)} images but {len(y)} labels under 'y'")
    return x, y


def load_images(path, levels: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(uint8 images, labels or None) from a folder of image files or an .npz."""
    p = Path(path)
    if p.is_dir():
        return load_folder(p, levels), None
    if p.suffix == ".npz" and p.is_file():
        return load_npz(p, levels)
    raise FileNotFoundError(f"{path} is neither a folder of images nor an existing .npz file")


def model_device(model) -> torch.device:
    """Device of a model's first parameter (CPU for parameter-free objects)."""
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def sample_levels(model, n: int, levels: int, *, seed: int, labels: Optional[torch.Tensor] = None,
                  batch_size: int = 500) -> torch.Tensor:
    """``n`` samples of ``model`` (object with ``sample(n, labels=None)``) as uint8 levels, seeded.

    Sampling runs in ``model.eval()`` (training mode restored after) under
    ``torch.random.fork_rng`` seeded with ``seed``; labels are moved to the model's device.
    """
    was_training, device, out = getattr(model, "training", False), model_device(model), []
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for s in range(0, n, batch_size):
                lab = None if labels is None else torch.as_tensor(labels[s:s + batch_size]).to(device)
                u = model.sample(min(batch_size, n - s), labels=lab)
                out.append(quantize(u.detach().float().cpu(), levels))
    finally:
        if was_training:
            model.train()
    return torch.cat(out)
