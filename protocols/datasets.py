"""DATASETS registry: every dataset as uint8 N x C x H x W tensors with fixed splits.

docs/design.md "The embedded default"; the paper (Lucas et al., NeurIPS 2019) trains on CIFAR-10 (32x32,
Sec. 5), STL-10 at 48x48, ImageNet and LSUN at 64x64 (Sec. 5.3, Table 4) and reports every
metric on held-out data.  Each :class:`ImageDataset` therefore has three splits: ``train``,
``val`` (checkpoint selection; carved from train with a fixed seed) and ``test`` (the
official held-out split; every reported metric), its number of intensity levels (BPD
uses it) and a content hash over all of it.

On-disk formats are read directly, matching the layouts torchvision writes (so
``download=True`` is torchvision's downloader and nothing else): IDX for (Fashion-)MNIST
(parsed as in ``torchvision/datasets/mnist.py: read_sn3_pascalvincent_tensor``), the
CIFAR-10 python pickles (``cifar.py``), the STL-10 binaries (``stl10.py: __loadfile``,
images stored column-major), the downsampled-ImageNet npz batches (Chrabaszcz et al. 2017)
and folders of images (LSUN exported from LMDB, CelebA, anything).

Missing data raises :class:`DatasetNotFoundError`, one line naming the dataset, every
place looked in and how to get it; a corrupt file raises :class:`DatasetFormatError`.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from models.base import DataSpec
from common import defaults
from common.registry import Registry, UnknownNameError

__all__ = ["ImageDataset", "DatasetNotFoundError", "DatasetFormatError", "DATASETS",
           "load_dataset", "dataset_names", "read_idx", "ENV_VAR", "SPLIT_SEED"]

ENV_VAR = defaults.DATA_ENV       # AVADE_DATA (common/defaults.py: every CLI's paths)
SPLIT_SEED = 0                    # every split of every dataset uses this seed
VAL_MAX = 5000                    # val = min(VAL_MAX, N // 10) images held out of train
DIGITS_SPLIT = (1257, 180, 360)   # train / val / test of scikit-learn's 1797 digits
FOLDER_RES = 64                   # default side of folder:PATH images (the paper's LSUN)
from metrics.images import IMAGE_SUFFIXES as IMAGE_EXTS  # noqa: E402  one suffix list: metrics/images.py reads folders
# Places a distribution's package puts a dataset (tests monkeypatch this).
SYSTEM_DIRS = {"fashion-mnist": ("/usr/share/datasets/fashion-mnist",)}

DATASETS: Registry = Registry("dataset")


# ---- errors -----------------------------------------------------------------------
class DatasetNotFoundError(FileNotFoundError):
    """Data absent: ``str()`` is one line with the name, every place looked in, and how to get it."""

    def __init__(self, name: str, looked: Sequence[str], how: str):
        self.name, self.looked, self.how = name, list(looked), how
        where = "; ".join(self.looked) if self.looked else "nowhere (no --data-root, $AVADE_DATA unset)"
        super().__init__(_one_line(f"dataset {name!r} not found; looked in: {where}; to get it: {how}"))

    def __str__(self) -> str:
        return str(self.args[0])


class DatasetFormatError(ValueError):
    """A data file exists but is corrupt, truncated or of the wrong shape (one-line message)."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _bad(path, what: str) -> DatasetFormatError:
    return DatasetFormatError(_one_line(f"{path}: {what}; delete the file and get it again"))


# ---- the dataset object -----------------------------------------------------------
@dataclass
class ImageDataset:
    name: str
    train_x: torch.Tensor
    train_y: Optional[torch.Tensor]
    val_x: torch.Tensor
    val_y: Optional[torch.Tensor]
    test_x: torch.Tensor
    test_y: Optional[torch.Tensor]
    levels: int
    n_classes: int
    source: str
    content_hash: str = ""        # computed from the splits when left empty

    def __post_init__(self):
        for split in ("train", "val", "test"):
            x, y = _checked(self, split)
            setattr(self, f"{split}_x", x)
            setattr(self, f"{split}_y", y)
        _check_consistency(self)
        if not self.content_hash:
            self.content_hash = content_hash(self)

    @property
    def spec(self) -> DataSpec:
        c, h, _ = self.train_x.shape[1:]
        return DataSpec(channels=int(c), resolution=int(h), levels=self.levels, n_classes=self.n_classes)

    def split(self, name: str) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; use 'train', 'val' or 'test'")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")


def _checked(ds: ImageDataset, split: str):
    x, y = getattr(ds, f"{split}_x"), getattr(ds, f"{split}_y")
    where = f"dataset {ds.name!r} split {split!r}"
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"{where}: images must be a uint8 tensor N x C x H x W, got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    if x.shape[0] < 1 or x.shape[2] != x.shape[3]:
        raise ValueError(f"{where}: need at least one square image, got shape {tuple(x.shape)}")
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
            raise ValueError(f"{where}: labels must be int64 of shape ({x.shape[0]},), got "
                             f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
        y = y.contiguous()
    return x.contiguous(), y


def _check_consistency(ds: ImageDataset) -> None:
    xs = [ds.train_x, ds.val_x, ds.test_x]
    ys = [ds.train_y, ds.val_y, ds.test_y]
    if len({tuple(x.shape[1:]) for x in xs}) != 1:
        raise ValueError(f"dataset {ds.name!r}: splits differ in C x H x W: {[tuple(x.shape[1:]) for x in xs]}")
    if not 2 <= ds.levels <= 256 or max(int(x.max()) for x in xs) >= ds.levels:
        raise ValueError(f"dataset {ds.name!r}: pixel values must lie in 0..levels-1 with 2 <= levels <= 256 "
                         f"(levels={ds.levels})")
    labelled = [y is not None for y in ys]
    if len(set(labelled)) != 1 or labelled[0] != (ds.n_classes > 0):
        raise ValueError(f"dataset {ds.name!r}: either every split has labels and n_classes > 0, "
                         f"or none has and n_classes = 0 (n_classes={ds.n_classes})")
    if labelled[0] and any(int(y.min()) < 0 or int(y.max()) >= ds.n_classes for y in ys):
        raise ValueError(f"dataset {ds.name!r}: labels must lie in 0..{ds.n_classes - 1}")


def content_hash(ds: ImageDataset) -> str:
    """sha1 (16 hex) over every split's images and labels, the levels and the classes."""
    h = hashlib.sha1(f"levels={ds.levels};classes={ds.n_classes}".encode())
    for split in ("train", "val", "test"):
        x, y = ds.split(split)
        h.update(f";{split}:{tuple(x.shape)}".encode())
        h.update(x.numpy())
        h.update(b";labels:" + (b"none" if y is None else y.numpy().astype("<i8").tobytes()))
    return h.hexdigest()[:16]


def _make(name, source, levels, n_classes, train, val, test) -> ImageDataset:
    """Build from numpy (x, y) pairs; y None means unlabelled."""
    t = _tensor
    return ImageDataset(name, t(train[0]), t(train[1]), t(val[0]), t(val[1]), t(test[0]), t(test[1]),
                        levels=levels, n_classes=n_classes, source=str(source))


def _tensor(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
    """Zero-copy where possible (ImageNet64 is 16 GB): copies only read-only or strided arrays."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


# ---- splits -----------------------------------------------------------------------
def _val_indices(n: int, seed: int = SPLIT_SEED) -> np.ndarray:
    n_val = min(VAL_MAX, n // 10)
    if n_val < 1:
        raise ValueError(f"need at least 10 training images to hold out a validation split, got {n}")
    return np.sort(np.random.default_rng(seed).permutation(n)[:n_val])


def _holdout(x: np.ndarray, y: Optional[np.ndarray]):
    """Split (x, y) into (train, val) with the fixed seed; val = min(5000, 10%) of the images."""
    keep = np.ones(len(x), bool)
    val = _val_indices(len(x))
    keep[val] = False
    sub = lambda a, i: None if a is None else a[i]
    return (x[keep], sub(y, keep)), (x[val], sub(y, val))


def _largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    """Integer quotas proportional to ``counts`` that sum exactly to ``total``."""
    exact = counts * total / counts.sum()
    quota = np.floor(exact).astype(int)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total - quota.sum()]] += 1
    return quota


def _stratified_split(y: np.ndarray, sizes: Sequence[int], seed: int = SPLIT_SEED) -> List[np.ndarray]:
    """Indices of parts of the given sizes (sum = len(y)), each with the class proportions of y."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    members = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    counts = np.array([len(m) for m in members])
    quotas = [_largest_remainder(counts, s) for s in sizes[1:]]
    quotas.insert(0, counts - sum(quotas))
    parts, start = [], np.zeros(len(classes), int)
    for q in quotas:
        parts.append(np.sort(np.concatenate([m[s:s + k] for m, s, k in zip(members, start, q)])))
        start = start + q
    return parts


# ---- where to look ----------------------------------------------------------------
def _roots(data_root) -> List[Path]:
    roots = [Path(data_root).expanduser()] if data_root else []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    return roots


def _candidates(data_root, subdirs: Iterable[str], system: Iterable[str] = ()) -> List[Path]:
    dirs = [r / s if s else r for r in _roots(data_root) for s in subdirs]
    return dirs + [Path(s) for s in system]


def _search(dirs: Iterable[Path], missing: Callable[[Path], List[str]], looked: List[str]) -> Optional[Path]:
    """First directory in which ``missing(d)`` is empty; records every place tried in ``looked``."""
    for d in dirs:
        if not d.is_dir():
            looked.append(str(d))
            continue
        lacks = missing(d)
        if not lacks:
            return d
        looked.append(f"{d} (lacks {', '.join(lacks)})")
    return None


def _locate(name, data_root, download, dirs_fn, missing, fetch, how) -> Path:
    """Find the data; with ``download`` fetch it into the first root and look again."""
    looked: List[str] = [] if _roots(data_root) else [f"(no --data-root given and ${ENV_VAR} unset)"]
    found = _search(dirs_fn(data_root), missing, looked)
    if found is None and download:
        if fetch is None:
            raise DatasetNotFoundError(name, looked, f"--download is not supported for {name}; {how}")
        if not _roots(data_root):
            raise DatasetNotFoundError(name, looked, f"pass --data-root DIR (or set ${ENV_VAR}) to say where "
                                                      f"--download should put it")
        target = _roots(data_root)[0]
        try:
            target.mkdir(parents=True, exist_ok=True)
            fetch(target)
        except Exception as e:  # network, disk or checksum failure: report it on one line
            raise DatasetNotFoundError(name, looked, f"download into {target} failed "
                                                      f"({type(e).__name__}: {e}); {how}") from None
        looked = []
        found = _search(dirs_fn(data_root), missing, looked)
    if found is None:
        raise DatasetNotFoundError(name, looked, how)
    return found


# ---- digits (the embedded default) --------------------------------------------------
@DATASETS.register("digits", resolution=8, about="scikit-learn's bundled 8x8 digits; no files needed")
def load_digits_dataset(root=None, download: bool = False) -> ImageDataset:
    from sklearn.datasets import load_digits   # lazy: sklearn's import is the slow part

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None]          # values 0..16 -> 17 levels
    y = bunch.target.astype(np.int64)
    if len(x) != sum(DIGITS_SPLIT) or not np.array_equal(bunch.images, x[:, 0]):
        raise ValueError(f"scikit-learn's digits changed: expected {sum(DIGITS_SPLIT)} integer images, "
                         f"got {len(x)}; pin scikit-learn or update DIGITS_SPLIT")
    tr, va, te = _stratified_split(y, DIGITS_SPLIT)
    return _make("digits", "sklearn", 17, 10, (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te]))


# ---- IDX: MNIST and Fashion-MNIST -------------------------------------------------
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as e:
        raise _bad(path, f"corrupt or truncated gzip ({e})") from None


def read_idx(path, ndim: int) -> np.ndarray:
    """Parse an IDX ubyte file (raw or .gz): magic 0x0000080<ndim>, big-endian uint32 dims, data."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise _bad(path, f"bad IDX magic {raw[:4].hex() or 'empty'} (expected 0000080{ndim}: uint8, {ndim} dims)")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise _bad(path, f"truncated IDX header ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    size = int(np.prod(dims))
    if len(raw) - head != size:
        raise _bad(path, f"IDX dims {dims} need {size} data bytes, file has {len(raw) - head} (truncated or padded)")
    return np.frombuffer(raw, np.uint8, count=size, offset=head).reshape(dims)


def _idx_path(d: Path, base: str) -> Optional[Path]:
    return next((p for p in (d / base, d / f"{base}.gz") if p.is_file()), None)


def _idx_missing(d: Path) -> List[str]:
    return [f"{b}[.gz]" for b in IDX_FILES if _idx_path(d, b) is None]


def _read_idx_split(d: Path, images: str, labels: str) -> Tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(_idx_path(d, images), 3), read_idx(_idx_path(d, labels), 1)
    if x.shape[1:] != (28, 28):
        raise _bad(_idx_path(d, images), f"expected 28x28 images, got {x.shape[1]}x{x.shape[2]}")
    if len(x) != len(y):
        raise _bad(_idx_path(d, labels), f"{len(y)} labels for {len(x)} images in {images}")
    if len(y) and y.max() > 9:
        raise _bad(_idx_path(d, labels), f"label {int(y.max())} outside 0..9")
    padded = np.zeros((len(x), 1, 32, 32), np.uint8)     # 28x28 -> 32x32, 2 zero pixels each side
    padded[:, 0, 2:30, 2:30] = x
    return padded, y.astype(np.int64)


def _idx_loader(name: str, tv_class: str, how: str):
    def dirs(data_root):
        subs = (name, f"{name}/raw", f"{tv_class}/raw", "")
        return _candidates(data_root, subs, SYSTEM_DIRS.get(name, ()))

    def fetch(root: Path):
        import torchvision.datasets as tvd
        getattr(tvd, tv_class)(str(root), train=True, download=True)

    def load(root=None, download: bool = False) -> ImageDataset:
        d = _locate(name, root, download, dirs, _idx_missing, fetch, how)
        train, val = _holdout(*_read_idx_split(d, *IDX_FILES[:2]))
        test = _read_idx_split(d, *IDX_FILES[2:])
        return _make(name, d, 256, 10, train, val, test)

    return load


DATASETS.add("fashion-mnist", _idx_loader(
    "fashion-mnist", "FashionMNIST",
    "apt-get install dataset-fashion-mnist, or pass --download (torchvision, into --data-root), or the IDX "
    "files from https://github.com/zalandoresearch/fashion-mnist into --data-root"),
    resolution=32, content=28, about="Fashion-MNIST IDX files, 28x28 padded to 32x32",
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"))
DATASETS.add("mnist", _idx_loader(
    "mnist", "MNIST",
    "pass --download (torchvision, into --data-root), or put the IDX files from "
    "https://yann.lecun.com/exdb/mnist/ into --data-root"),
    resolution=32, content=28, about="MNIST IDX files, 28x28 padded to 32x32")


# ---- CIFAR-10 python pickles ------------------------------------------------------
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_PICKLE_OK = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
              ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a data file cannot run code."""

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_OK:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], np.int64)
    except Exception as e:  # any unpickling failure means the file is not a CIFAR batch
        raise _bad(path, f"not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise _bad(path, f"expected uint8 data N x 3072 and N labels, got {data.dtype} {data.shape}, "
                         f"{labels.shape} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise _bad(path, "labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_missing(d: Path) -> List[str]:
    return [f for f in CIFAR_FILES if not (d / f).is_file()]


def _cifar_dirs(data_root) -> List[Path]:
    return _candidates(data_root, (CIFAR_DIR, f"cifar10/{CIFAR_DIR}", "cifar10"))


def _cifar_fetch(root: Path) -> None:
    import torchvision.datasets as tvd
    tvd.CIFAR10(str(root), train=True, download=True)


@DATASETS.register("cifar10", resolution=32, about="CIFAR-10 python batches (torchvision layout)",
                   class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                "truck"))
def load_cifar10(root=None, download: bool = False) -> ImageDataset:
    how = ("pass --download (torchvision, into --data-root), or extract cifar-10-python.tar.gz from "
           "https://www.cs.toronto.edu/~kriz/cifar.html into --data-root")
    d = _locate("cifar10", root, download, _cifar_dirs, _cifar_missing, _cifar_fetch, how)
    parts = [_read_cifar_batch(d / f) for f in CIFAR_FILES[:-1]]
    train, val = _holdout(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return _make("cifar10", d, 256, 10, train, val, _read_cifar_batch(d / CIFAR_FILES[-1]))


# ---- STL-10 binaries --------------------------------------------------------------
STL_DIR = "stl10_binary"
STL_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
STL_SIDE, STL_RES = 96, 48       # stored 96x96; the paper uses 48x48 (Table 4)
_STL_CHUNK = 2048                # images resized per step (keeps the 100k unlabeled images cheap)


def _read_stl_images(path: Path) -> np.ndarray:
    """Images (N, 3, 48, 48): stored column-major (N, 3, W, H) at 96, area-downsampled by 2."""
    per = 3 * STL_SIDE * STL_SIDE
    size = path.stat().st_size
    if size == 0 or size % per:
        raise _bad(path, f"size {size} is not a positive multiple of {per} (3x96x96 images)")
    raw = np.memmap(path, np.uint8, mode="r").reshape(-1, 3, STL_SIDE, STL_SIDE)
    out = np.empty((len(raw), 3, STL_RES, STL_RES), np.uint8)
    for i in range(0, len(raw), _STL_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(raw[i:i + _STL_CHUNK].transpose(0, 1, 3, 2)))
        small = F.interpolate(chunk.float(), size=(STL_RES, STL_RES), mode="area")
        out[i:i + _STL_CHUNK] = small.round().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def _read_stl_labels(path: Path, n: int) -> np.ndarray:
    y = np.fromfile(path, np.uint8).astype(np.int64) - 1          # stored 1..10
    if y.shape != (n,):
        raise _bad(path, f"expected {n} labels (one per image), got {len(y)}")
    if y.min() < 0 or y.max() > 9:
        raise _bad(path, f"labels must lie in 1..10, got {y.min() + 1}..{y.max() + 1}")
    return y


def _stl_fetch(root: Path) -> None:
    import torchvision.datasets as tvd
    tvd.STL10(str(root), split="train+unlabeled", download=True)


@DATASETS.register("stl10", resolution=STL_RES, about="STL-10 binaries at 48x48; train+unlabeled if present")
def load_stl10(root=None, download: bool = False) -> ImageDataset:
    """Train on train_X (+ unlabeled_X when present: then no split has labels), test on test_X."""
    how = ("pass --download (torchvision, 2.6 GB, into --data-root), or extract stl10_binary.tar.gz from "
           "https://cs.stanford.edu/~acoates/stl10/ into --data-root")
    dirs = lambda r: _candidates(r, (STL_DIR, f"stl10/{STL_DIR}", "stl10"))
    d = _locate("stl10", root, download, dirs, lambda p: [f for f in STL_FILES if not (p / f).is_file()],
                _stl_fetch, how)
    tx, ex = _read_stl_images(d / "train_X.bin"), _read_stl_images(d / "test_X.bin")
    ty, ey = _read_stl_labels(d / "train_y.bin", len(tx)), _read_stl_labels(d / "test_y.bin", len(ex))
    if (d / "unlabeled_X.bin").is_file():
        tx, ty, ey = np.concatenate([tx, _read_stl_images(d / "unlabeled_X.bin")]), None, None
    train, val = _holdout(tx, ty)
    return _make("stl10", d, 256, 0 if ty is None else 10, train, val, (ex, ey))


# ---- downsampled ImageNet npz batches ---------------------------------------------
IMAGENET_BATCHES = 10


def _imagenet_files(d: Path) -> Tuple[dict, Optional[Path]]:
    found = {}
    for p in d.rglob("train_data_batch_*.npz"):
        m = re.fullmatch(r"train_data_batch_(\d+)\.npz", p.name)
        if m:
            found.setdefault(int(m.group(1)), p)
    return found, next(iter(sorted(d.rglob("val_data.npz"))), None)


def _imagenet_missing(d: Path) -> List[str]:
    batches, val = _imagenet_files(d)
    lacks = [f"train_data_batch_{i}.npz" for i in range(1, IMAGENET_BATCHES + 1) if i not in batches]
    return lacks + ([] if val else ["val_data.npz"])


def _npz_labels(path: Path) -> np.ndarray:
    try:
        with np.load(path) as z:
            y = np.asarray(z["labels"]).astype(np.int64) - 1          # stored 1..1000
    except Exception as e:
        raise _bad(path, f"not a downsampled-ImageNet npz batch ({type(e).__name__}: {e})") from None
    if y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() > 999)):
        raise _bad(path, "labels must be a vector in 1..1000")
    return y


def _npz_images(path: Path, res: int, n: int) -> np.ndarray:
    with np.load(path) as z:
        x = np.asarray(z["data"])
    if x.dtype != np.uint8 or x.shape != (n, 3 * res * res):
        raise _bad(path, f"expected uint8 data ({n}, {3 * res * res}), got {x.dtype} {x.shape}")
    return x.reshape(n, 3, res, res)


def _read_imagenet_train(paths: List[Path], res: int):
    """Fill train and val arrays batch by batch, so memory peaks at the data plus one batch."""
    ys = [_npz_labels(p) for p in paths]
    y = np.concatenate(ys)
    keep = np.ones(len(y), bool)
    keep[_val_indices(len(y))] = False
    pos_t, pos_v = np.cumsum(keep) - 1, np.cumsum(~keep) - 1
    tx = np.empty((int(keep.sum()), 3, res, res), np.uint8)
    vx = np.empty((len(y) - len(tx), 3, res, res), np.uint8)
    start = 0
    for p, yb in zip(paths, ys):
        xb, sl = _npz_images(p, res, len(yb)), slice(start, start + len(yb))
        tx[pos_t[sl][keep[sl]]] = xb[keep[sl]]
        vx[pos_v[sl][~keep[sl]]] = xb[~keep[sl]]
        start += len(yb)
    return (tx, y[keep]), (vx, y[~keep])


def _imagenet_loader(res: int):
    name = f"imagenet{res}"
    how = (f"download Imagenet{res}_train_npz and Imagenet{res}_val_npz from https://image-net.org/download-images "
           f"(downsampled ImageNet; needs an account) and extract them into --data-root/{name}")

    def load(root=None, download: bool = False) -> ImageDataset:
        d = _locate(name, root, download, lambda r: _candidates(r, (name,)), _imagenet_missing, None, how)
        batches, val = _imagenet_files(d)
        train, heldout = _read_imagenet_train([batches[i] for i in range(1, IMAGENET_BATCHES + 1)], res)
        ey = _npz_labels(val)
        return _make(name, d, 256, 1000, train, heldout, (_npz_images(val, res, len(ey)), ey))

    return load


for _res in (32, 64):
    DATASETS.add(f"imagenet{_res}", _imagenet_loader(_res), resolution=_res,
                 about=f"downsampled ImageNet {_res}x{_res} npz batches (val_data = test)")


# ---- folders of images: folder:PATH[@RES], lsun, celeba ---------------------------
def _image_files(d: Path) -> List[Path]:
    from metrics.images import image_files

    return image_files(d)


def _read_image(path: Path, res: int) -> np.ndarray:
    """RGB, shorter side resized to ``res`` (bicubic, antialiased), centre-cropped: (3, res, res)."""
    from metrics.images import UnreadableImageError, read_image

    try:
        return read_image(path, resolution=res, rgb=True)
    except UnreadableImageError as e:
        raise _bad(e.path, f"unreadable image ({e.reason})") from None


def _load_folder(name: str, d: Path, res: int) -> ImageDataset:
    files = _image_files(d)
    if len(files) < 3:
        raise ValueError(f"dataset {name!r}: {d} holds {len(files)} image(s) ({', '.join(IMAGE_EXTS)}); "
                         f"need at least 3 for train/val/test")
    x = np.stack([_read_image(p, res) for p in files])
    n_held = max(1, round(0.05 * len(x)))                       # val 5%, test 5%, train 90%
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    val, test, train = (np.sort(perm[:n_held]), np.sort(perm[n_held:2 * n_held]), np.sort(perm[2 * n_held:]))
    return _make(name, d, 256, 0, (x[train], None), (x[val], None), (x[test], None))


def _folder_missing(d: Path) -> List[str]:
    has = any(p.suffix.lower() in IMAGE_EXTS and p.is_file() for p in d.rglob("*"))
    return [] if has else [f"image files ({', '.join(IMAGE_EXTS)})"]


def parse_folder_name(name: str) -> Tuple[str, int]:
    """'folder:PATH' or 'folder:PATH@RES' -> (PATH, RES)."""
    spec = name[len("folder:"):]
    m = re.fullmatch(r"(.*)@(\d+)", spec)
    path, res = (m.group(1), int(m.group(2))) if m else (spec, FOLDER_RES)
    if not path or res < 1:
        raise ValueError(f"bad dataset {name!r}: use folder:PATH or folder:PATH@RES with RES a positive integer")
    return path, res


def load_folder(name: str, root=None) -> ImageDataset:
    path, res = parse_folder_name(name)
    p = Path(path).expanduser()
    dirs = [p] if p.is_absolute() else [p] + _candidates(root, (path,))
    how = "give a directory that holds (in any subfolder) png/jpg/jpeg/bmp/webp images"
    d = _locate(name, root, False, lambda r: dirs, _folder_missing, None, how)
    return _load_folder(f"folder:{path}@{res}", d, res)


def _named_folder(name: str, how: str):
    def load(root=None, download: bool = False) -> ImageDataset:
        d = _locate(name, root, download, lambda r: _candidates(r, (name,)), _folder_missing, None, how)
        return _load_folder(name, d, FOLDER_RES)
    return load


DATASETS.add("lsun", _named_folder(
    "lsun", "export LSUN images from the LMDB files (https://github.com/fyu/lsun: python data.py export) into "
            "--data-root/lsun; for one category use folder:PATH"), resolution=FOLDER_RES,
    about="folder of LSUN images under DATA_ROOT/lsun, 64x64")
DATASETS.add("celeba", _named_folder(
    "celeba", "extract img_align_celeba.zip from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into "
              "--data-root/celeba"), resolution=FOLDER_RES,
    about="folder of CelebA images under DATA_ROOT/celeba, 64x64")


# ---- entry points -----------------------------------------------------------------
def load_dataset(name: str, data_root: Optional[str] = None, download: bool = False) -> ImageDataset:
    """Load a registered dataset or ``folder:PATH[@RES]``; unknown names raise UnknownNameError."""
    if name.startswith("folder:"):
        return load_folder(name, data_root)
    try:
        loader = DATASETS.get(name)
    except UnknownNameError:
        raise UnknownNameError(f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}") from None
    return loader(data_root, download)


def dataset_names() -> List[str]:
    return DATASETS.names() + ["folder:PATH"]
