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

The one folder reader of the suite (:func:`image_files`, :func:`read_image`, :func:`read_folder`):
``python -m metrics`` folders and the ``folder:PATH`` / ``lsun`` / ``celeba`` datasets
(protocols/datasets.py, which asks for RGB and a resolution: shorter side resized to it with PIL
bicubic, then centre-cropped) read the same files the same way.

Bad input is a one-line error naming the file or argument: NaN or infinite floats, floats outside
[0, 1], an image-suffixed file PIL cannot read, an .npz that is not one (or holds pickled objects).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from models.base import quantize, to_unit

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class UnreadableImageError(ValueError):
    """An image-suffixed file that PIL cannot decode; ``str()`` is one line naming it."""

    def __init__(self, path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} is not a readable image ({reason}); remove or replace the file")


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


def check_unit_floats(x: torch.Tensor, what: str = "images") -> torch.Tensor:
    """Float images must be finite and lie in [0, 1]; a one-line error naming ``what`` otherwise."""
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{what} hold {bad} NaN or infinite value(s); images must be finite floats in [0, 1] "
                         "(or uint8 levels): check what produced them")
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError(f"float {what} must lie in [0, 1] (u-space samples), got range "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return x


def to_levels(images, levels: int, what: str = "images") -> torch.Tensor:
    """uint8 levels (checked) or u-space floats (checked, quantised) -> uint8 N x C x H x W tensor."""
    if isinstance(images, (str, Path)):
        return load_images(images, levels)[0]
    x = torch.as_tensor(_channels_first(np.asarray(images)) if not isinstance(images, torch.Tensor) else images)
    if x.dtype == torch.uint8:
        return check_uint8(x.cpu(), levels, what)
    if not x.is_floating_point():
        raise ValueError(f"{what} must be uint8 levels or floats in [0, 1], got dtype {x.dtype}")
    return check_uint8(quantize(check_unit_floats(x.detach().cpu(), what), levels), levels, what)


def as_unit(images, levels: int, what: str = "images") -> torch.Tensor:
    """Images for a feature extractor: uint8 levels -> x / (L - 1); floats must already be in [0, 1]."""
    x = torch.as_tensor(images)
    return to_unit(x, levels) if x.dtype == torch.uint8 else check_unit_floats(x, what).float()


def image_files(folder) -> List[Path]:
    """Every file under ``folder`` (recursively) whose suffix is in IMAGE_SUFFIXES (any case), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _resize_centre_crop(im: Image.Image, res: int) -> Image.Image:
    """Shorter side resized to ``res`` (PIL bicubic, antialiased), then the centre res x res."""
    w, h = im.size
    scale = res / min(w, h)
    size = (max(res, round(w * scale)), max(res, round(h * scale)))
    im = im.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - res) // 2, (size[1] - res) // 2
    return im.crop((left, top, left + res, top + res))


def read_image(path, resolution: Optional[int] = None, rgb: bool = False) -> np.ndarray:
    """One image file -> uint8 C x H x W: grey stays 1 channel (unless ``rgb``), any other mode becomes RGB;
    with ``resolution``, resized and centre-cropped to resolution x resolution."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB") if rgb or im.mode not in ("L", "RGB") else im.copy()
        if resolution is not None:
            im = _resize_centre_crop(im, resolution)
        a = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 -- PIL raises many types; any of them means "cannot be read"
        raise UnreadableImageError(path, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def read_folder(folder, resolution: Optional[int] = None, rgb: bool = False) -> np.ndarray:
    """Every image under ``folder`` (:func:`image_files`, :func:`read_image`) as uint8 N x C x H x W."""
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    arrays = [read_image(p, resolution, rgb) for p in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images under {folder} differ in size/channels {sorted(shapes)[:3]}: resize them to one "
                         "shape")
    return np.stack(arrays)


def load_folder(path: Path, levels: int) -> torch.Tensor:
    """A folder of 8-bit image files as uint8 levels (see the module docstring)."""
    v = read_folder(path).astype(np.float64)
    return torch.from_numpy(np.rint(v * (levels - 1) / 255).astype(np.uint8))


def _npz_problem(path: Path, e: Exception) -> str:
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            npy = f.read(6) == b"\x93NUMPY"
        return "a single .npy array, not an .npz (zip) archive" if npy else "not a zip archive, which an .npz is"
    if isinstance(e, ValueError) and "allow_pickle" in str(e):
        return "it holds pickled Python objects, which are never loaded"
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def read_npz(path) -> Dict[str, np.ndarray]:
    """Every array of an .npz file (never unpickling); a one-line error naming the file when it is not one."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:                       # our handle: closed on any error
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with z:
                return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 -- zipfile, numpy and OS errors all mean "not a readable .npz"
        raise ValueError(f"{path} is not a readable .npz of images ({_npz_problem(path, e)})") from None


def load_npz(path: Path, levels: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    arrays = read_npz(path)
    name = next((k for k in ("x", "images") if k in arrays), next(iter(arrays)) if len(arrays) == 1 else None)
    if name is None:
        raise ValueError(f"{path}: no images found; store them under key 'x' (keys present: {sorted(arrays)})")
    x = to_levels(arrays[name], levels, f"{path}[{name}]")
    y = torch.as_tensor(arrays["y"]).long() if "y" in arrays else None
    if y is not None and len(y) != len(x):
        raise ValueError(f"{path}: {len(x)} images but {len(y)} labels under 'y'")
    return x, y


def load_images(path, levels: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(uint8 images, labels or None) from a folder of image files or an .npz."""
    p = Path(path)
    if p.is_dir():
        return load_folder(p, levels), None
    if p.suffix.lower() == ".npz" and p.is_file():
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
                u = model.sample(min(batch_size, n - s), labels=lab).detach().float().cpu()
                bad = int((~torch.isfinite(u)).sum())
                if bad:
                    raise ValueError(f"model.sample returned {bad} NaN or infinite value(s) in samples {s}.."
                                     f"{s + len(u) - 1}; metrics need finite samples")
                out.append(quantize(u, levels))
    finally:
        if was_training:
            model.train()
    return torch.cat(out)
