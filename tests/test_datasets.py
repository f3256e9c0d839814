"""DATASETS registry: the embedded digits and tiny real-format fixtures of every on-disk format.

Fixtures are written here in the formats torchvision and the dataset authors ship (IDX,
CIFAR-10 python pickles, STL-10 binaries, downsampled-ImageNet npz, folders of images) and
read back through ``load_dataset``.  No network: ``download=True`` is only exercised where
it must fail before reaching the network.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import protocols.datasets as D
from common.registry import UnknownNameError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
RNG = np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No $AVADE_DATA from the environment, and a system dir that does not exist."""
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    monkeypatch.setattr(D, "SYSTEM_DIRS", {"fashion-mnist": (str(tmp_path / "no-system-dir"),)})


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


# ---- digits -----------------------------------------------------------------------
def test_digits_splits_levels_and_spec():
    ds = D.load_dataset("digits")
    assert [len(ds.split(s)[0]) for s in ("train", "val", "test")] == [1257, 180, 360]
    for s in ("train", "val", "test"):
        x, y = ds.split(s)
        assert x.dtype == torch.uint8 and x.is_contiguous() and x.shape[1:] == (1, 8, 8)
        assert y.dtype == torch.int64 and len(y) == len(x)
    assert (ds.levels, ds.n_classes, ds.source) == (17, 10, "sklearn")
    assert int(max(ds.split(s)[0].max() for s in ("train", "val", "test"))) == 16
    assert (ds.spec.channels, ds.spec.resolution, ds.spec.levels, ds.spec.n_classes) == (1, 8, 17, 10)
    assert torch.bincount(ds.val_y).tolist() == [18] * 10          # stratified
    assert torch.bincount(ds.test_y, minlength=10).min() >= 35


def test_digits_is_a_partition_of_sklearn_digits():
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = D.load_dataset("digits")
    rows = torch.cat([ds.train_x, ds.val_x, ds.test_x]).reshape(-1, 64).numpy()
    labels = torch.cat([ds.train_y, ds.val_y, ds.test_y]).numpy()
    got = np.column_stack([rows, labels])
    want = np.column_stack([ref.images.reshape(-1, 64).astype(np.uint8), ref.target])
    assert np.array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)])


def test_digits_deterministic_and_hash_stable():
    a, b = D.load_dataset("digits"), D.load_dataset("digits")
    for s in ("train", "val", "test"):
        assert torch.equal(a.split(s)[0], b.split(s)[0]) and torch.equal(a.split(s)[1], b.split(s)[1])
    assert a.content_hash == b.content_hash and len(a.content_hash) == 16
    int(a.content_hash, 16)


def _rebuild(ds, **changes):
    fields = dict(name=ds.name, train_x=ds.train_x, train_y=ds.train_y, val_x=ds.val_x, val_y=ds.val_y,
                  test_x=ds.test_x, test_y=ds.test_y, levels=ds.levels, n_classes=ds.n_classes,
                  source=ds.source)
    fields.update(changes)
    return D.ImageDataset(**fields)


def test_hash_changes_with_any_byte_labels_or_levels():
    ds = D.load_dataset("digits")
    assert _rebuild(ds).content_hash == ds.content_hash
    assert _rebuild(ds, source="elsewhere", name="copy").content_hash == ds.content_hash
    x = ds.test_x.clone()
    x[-1, 0, 7, 7] ^= 1
    assert _rebuild(ds, test_x=x).content_hash != ds.content_hash
    y = ds.val_y.clone()
    y[0] = (y[0] + 1) % 10
    assert _rebuild(ds, val_y=y).content_hash != ds.content_hash
    assert _rebuild(ds, levels=18).content_hash != ds.content_hash
    moved = _rebuild(ds, train_x=ds.train_x[1:], train_y=ds.train_y[1:],
                     val_x=torch.cat([ds.train_x[:1], ds.val_x]), val_y=torch.cat([ds.train_y[:1], ds.val_y]))
    assert moved.content_hash != ds.content_hash


def test_image_dataset_rejects_bad_tensors():
    ds = D.load_dataset("digits")
    with pytest.raises(ValueError, match="uint8"):
        _rebuild(ds, train_x=ds.train_x.float())
    with pytest.raises(ValueError, match="levels"):
        _rebuild(ds, levels=16)                         # pixel value 16 needs 17 levels
    with pytest.raises(ValueError, match="int64"):
        _rebuild(ds, test_y=ds.test_y.int())
    with pytest.raises(ValueError, match="labels"):
        _rebuild(ds, val_y=None)
    with pytest.raises(ValueError, match="C x H x W"):
        _rebuild(ds, test_x=torch.zeros(3, 1, 4, 4, dtype=torch.uint8), test_y=ds.test_y[:3])
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        _rebuild(ds, val_y=torch.full_like(ds.val_y, 10))
    with pytest.raises(ValueError, match="n_classes"):
        _rebuild(ds, n_classes=0)
    with pytest.raises(ValueError, match="unknown split"):
        ds.split("validation")


# ---- IDX: MNIST / Fashion-MNIST ----------------------------------------------------
def _idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write(path: Path, data: bytes, gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def write_idx_set(d: Path, gz: bool, n_train=30, n_test=10):
    arrays = {"train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": RNG.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": RNG.integers(0, 10, n_test, dtype=np.uint8)}
    for name, arr in arrays.items():
        _write(d / name, _idx_bytes(arr), gz)
    return list(arrays.values())


@pytest.mark.parametrize("name,sub,gz", [("mnist", "", False), ("mnist", "MNIST/raw", True),
                                         ("fashion-mnist", "fashion-mnist", True),
                                         ("fashion-mnist", "FashionMNIST/raw", False),
                                         ("fashion-mnist", "fashion-mnist/raw", True)])
def test_idx_fixture_loads(tmp_path, name, sub, gz):
    tx, ty, ex, ey = write_idx_set(tmp_path / sub, gz)
    ds = D.load_dataset(name, data_root=str(tmp_path))
    assert [len(ds.split(s)[0]) for s in ("train", "val", "test")] == [27, 3, 10]
    assert ds.test_x.shape[1:] == (1, 32, 32) and (ds.levels, ds.n_classes) == (256, 10)
    assert ds.spec.resolution == 32 and ds.source == str(tmp_path / sub)
    assert torch.equal(ds.test_x[:, 0, 2:30, 2:30], torch.from_numpy(ex))
    assert torch.equal(ds.test_y, torch.from_numpy(ey.astype(np.int64)))
    border = ds.train_x.clone()
    border[:, :, 2:30, 2:30] = 0
    assert int(border.max()) == 0
    seen = torch.cat([ds.train_x, ds.val_x])[:, 0, 2:30, 2:30].reshape(30, -1).numpy()
    assert sorted(map(bytes, seen)) == sorted(map(bytes, tx.reshape(30, -1)))


def test_idx_via_env_var(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "env" / "mnist", gz=True)
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "env"))
    ds = D.load_dataset("mnist", data_root=str(tmp_path / "empty"))
    assert ds.source == str(tmp_path / "env" / "mnist") and len(ds.test_x) == 10


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    arr = RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    good = _idx_bytes(arr)
    cases = {"magic.idx": (b"\x00\x00\x09\x03" + good[4:], "magic"),
             "dims.idx": (good[:4] + good[4:8], "header"),
             "short.idx": (good[:-5], "truncated"),
             "long.idx": (good + b"\x00", "truncated or padded")}
    for fname, (data, words) in cases.items():
        (tmp_path / fname).write_bytes(data)
        with pytest.raises(D.DatasetFormatError, match=words) as err:
            D.read_idx(tmp_path / fname, 3)
        assert str(tmp_path / fname) in _one_line(err)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-30])
    with pytest.raises(D.DatasetFormatError, match="gzip") as err:
        D.read_idx(tmp_path / "cut.gz", 3)
    _one_line(err)
    with pytest.raises(D.DatasetFormatError, match="magic"):
        D.read_idx(tmp_path / "long.idx", 1)             # an image file where labels were expected


def test_idx_corrupt_file_in_dataset_is_clear(tmp_path):
    write_idx_set(tmp_path / "mnist", gz=False)
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(_idx_bytes(np.zeros(9, np.uint8)))   # 9 labels for 10 images
    with pytest.raises(D.DatasetFormatError, match="9 labels for 10 images") as err:
        D.load_dataset("mnist", data_root=str(tmp_path))
    assert str(labels) in _one_line(err)


def test_debian_fashion_mnist_package(monkeypatch):
    if not DEBIAN_FASHION.is_dir():
        pytest.skip(f"{DEBIAN_FASHION} absent: apt-get install dataset-fashion-mnist to run this test")
    monkeypatch.setattr(D, "SYSTEM_DIRS", {"fashion-mnist": (str(DEBIAN_FASHION),)})
    ds = D.load_dataset("fashion-mnist")
    assert [len(ds.split(s)[0]) for s in ("train", "val", "test")] == [55000, 5000, 10000]
    assert ds.source == str(DEBIAN_FASHION) and ds.train_x.shape[1:] == (1, 32, 32)
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert D.read_idx(DEBIAN_FASHION / "train-labels-idx1-ubyte.gz", 1)[0] == 9   # an ankle boot


# ---- CIFAR-10 ---------------------------------------------------------------------
def write_cifar(d: Path, per_batch=4, n_test=6, protocol=2):
    d.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    out = {}
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        batch = {b"batch_label": name.encode(), b"labels": RNG.integers(0, 10, n).tolist(),
                 b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        (d / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        out[name] = batch
    return out


@pytest.mark.parametrize("sub,protocol", [("cifar-10-batches-py", 2), ("cifar10/cifar-10-batches-py", 5)])
def test_cifar10_fixture_loads(tmp_path, sub, protocol):
    batches = write_cifar(tmp_path / sub, protocol=protocol)
    ds = D.load_dataset("cifar10", data_root=str(tmp_path))
    assert [len(ds.split(s)[0]) for s in ("train", "val", "test")] == [18, 2, 6]
    assert ds.spec.shape == (3, 32, 32) and (ds.levels, ds.n_classes) == (256, 10)
    test = batches["test_batch"]
    assert torch.equal(ds.test_x, torch.from_numpy(test[b"data"].reshape(6, 3, 32, 32)))
    assert ds.test_y.tolist() == test[b"labels"]
    first = torch.from_numpy(batches["data_batch_1"][b"data"][:1].reshape(1, 3, 32, 32))
    assert any(torch.equal(first[0], x) for x in torch.cat([ds.train_x, ds.val_x]))


def test_cifar10_via_env_var(tmp_path, monkeypatch):
    write_cifar(tmp_path / "env" / "cifar10" / "cifar-10-batches-py")
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "env"))
    assert len(D.load_dataset("cifar10").test_x) == 6


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(D.DatasetFormatError, match="refusing to load builtins.print") as err:
        D.load_dataset("cifar10", data_root=str(tmp_path))
    _one_line(err)


# ---- STL-10 -----------------------------------------------------------------------
def _stl_images(n):
    """Images constant on 2x2 blocks, so area downsampling to 48x48 recovers ``small`` exactly."""
    small = RNG.integers(0, 256, (n, 3, 48, 48), dtype=np.uint8)
    return small, small.repeat(2, axis=2).repeat(2, axis=3)


def write_stl(d: Path, n_unlabeled: int):
    d.mkdir(parents=True)
    (tr_small, tr), (te_small, te) = _stl_images(10), _stl_images(4)
    col_major = lambda a: np.ascontiguousarray(a.transpose(0, 1, 3, 2)).tobytes()
    (d / "train_X.bin").write_bytes(col_major(tr))
    (d / "test_X.bin").write_bytes(col_major(te))
    (d / "train_y.bin").write_bytes(np.arange(1, 11, dtype=np.uint8).tobytes())
    (d / "test_y.bin").write_bytes(np.array([3, 1, 10, 2], np.uint8).tobytes())
    if n_unlabeled:
        (d / "unlabeled_X.bin").write_bytes(col_major(_stl_images(n_unlabeled)[1]))
    return tr_small, te_small


def test_stl10_labelled_without_unlabeled_file(tmp_path):
    tr_small, te_small = write_stl(tmp_path / "stl10_binary", n_unlabeled=0)
    ds = D.load_dataset("stl10", data_root=str(tmp_path))
    assert ds.spec.shape == (3, 48, 48) and ds.n_classes == 10
    assert torch.equal(ds.test_x, torch.from_numpy(te_small))      # orientation and 96 -> 48
    assert ds.test_y.tolist() == [2, 0, 9, 1]
    assert [len(ds.split(s)[0]) for s in ("train", "val", "test")] == [9, 1, 4]
    assert sorted(torch.cat([ds.train_y, ds.val_y]).tolist()) == list(range(10))


def test_stl10_with_unlabeled_is_unlabelled(tmp_path):
    write_stl(tmp_path / "stl10" / "stl10_binary", n_unlabeled=12)
    ds = D.load_dataset("stl10", data_root=str(tmp_path))
    assert (ds.train_y, ds.val_y, ds.test_y, ds.n_classes) == (None, None, None, 0)
    assert [len(ds.split(s)[0]) for s in ("train", "val", "test")] == [20, 2, 4]


def test_stl10_bad_size_is_clear(tmp_path):
    write_stl(tmp_path / "stl10_binary", n_unlabeled=0)
    path = tmp_path / "stl10_binary" / "test_X.bin"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(D.DatasetFormatError, match="multiple of 27648") as err:
        D.load_dataset("stl10", data_root=str(tmp_path))
    assert str(path) in _one_line(err)


# ---- downsampled ImageNet ---------------------------------------------------------
def write_imagenet(d: Path, res: int, per_batch=2, n_val=3, skip=()):
    train, val = d / f"Imagenet{res}_train_npz", d / f"Imagenet{res}_val_npz"
    train.mkdir(parents=True)
    val.mkdir(parents=True)
    for i in range(1, 11):
        if i not in skip:
            np.savez(train / f"train_data_batch_{i}.npz",
                     data=RNG.integers(0, 256, (per_batch, 3 * res * res), dtype=np.uint8),
                     labels=RNG.integers(1, 1001, per_batch).tolist(), mean=np.zeros(3 * res * res))
    data, labels = RNG.integers(0, 256, (n_val, 3 * res * res), dtype=np.uint8), [1, 1000, 7][:n_val]
    np.savez_compressed(val / "val_data.npz", data=data, labels=labels)
    return data, labels


@pytest.mark.parametrize("res", [32, 64])
def test_imagenet_fixture_loads(tmp_path, res):
    data, labels = write_imagenet(tmp_path / f"imagenet{res}", res)
    ds = D.load_dataset(f"imagenet{res}", data_root=str(tmp_path))
    assert [len(ds.split(s)[0]) for s in ("train", "val", "test")] == [18, 2, 3]
    assert ds.spec.shape == (3, res, res) and (ds.levels, ds.n_classes) == (256, 1000)
    assert torch.equal(ds.test_x, torch.from_numpy(data.reshape(3, 3, res, res)))
    assert ds.test_y.tolist() == [0, 999, 6]
    assert int(torch.cat([ds.train_y, ds.val_y]).max()) <= 999


def test_imagenet_missing_batch_is_named(tmp_path):
    write_imagenet(tmp_path / "imagenet32", 32, skip=(7,))
    with pytest.raises(D.DatasetNotFoundError, match="train_data_batch_7.npz") as err:
        D.load_dataset("imagenet32", data_root=str(tmp_path))
    assert "image-net.org" in _one_line(err)


# ---- folders of images ------------------------------------------------------------
def write_pngs(d: Path, n: int):
    sizes = [(40, 30), (100, 80), (64, 64), (20, 50), (17, 23)]
    modes = ["RGB", "L", "RGBA", "RGB", "P"]
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        arr = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert(modes[i % len(modes)])
        sub = d / f"class{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        img.save(sub / f"img{i}.{'png' if i % 2 else 'PNG'}")
    (d / "README.txt").write_text("not an image")


def test_folder_loads_resizes_and_splits(tmp_path):
    write_pngs(tmp_path / "imgs", 20)
    ds = D.load_dataset(f"folder:{tmp_path / 'imgs'}@16")
    assert ds.spec.shape == (3, 16, 16) and (ds.levels, ds.n_classes, ds.train_y) == (256, 0, None)
    assert [len(ds.split(s)[0]) for s in ("train", "val", "test")] == [18, 1, 1]
    assert ds.name == f"folder:{tmp_path / 'imgs'}@16"
    again = D.load_dataset(f"folder:{tmp_path / 'imgs'}@16")
    assert again.content_hash == ds.content_hash
    assert D.load_dataset(f"folder:{tmp_path / 'imgs'}").spec.resolution == 64


def test_folder_centre_crops_the_shorter_side(tmp_path):
    arr = np.zeros((20, 100, 3), np.uint8)                     # 100x20 -> 80x16 -> centre 16x16
    arr[:, :30, 2], arr[:, 30:70, 0], arr[:, 70:, 1] = 255, 255, 255   # blue | red | green
    for i in range(3):
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
    ds = D.load_dataset(f"folder:{tmp_path}@16")
    x = torch.cat([ds.train_x, ds.val_x, ds.test_x])
    assert torch.all(x[:, 0] >= 250) and torch.all(x[:, 1:] <= 5)


def test_folder_relative_to_data_root_and_errors(tmp_path):
    write_pngs(tmp_path / "root" / "mine", 3)
    ds = D.load_dataset("folder:mine@8", data_root=str(tmp_path / "root"))
    assert [len(ds.split(s)[0]) for s in ("train", "val", "test")] == [1, 1, 1]
    write_pngs(tmp_path / "two", 2)
    with pytest.raises(ValueError, match="need at least 3"):
        D.load_dataset(f"folder:{tmp_path / 'two'}")
    (tmp_path / "root" / "mine" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(D.DatasetFormatError, match="broken.png"):
        D.load_dataset("folder:mine@8", data_root=str(tmp_path / "root"))
    with pytest.raises(ValueError, match="folder:PATH@RES"):
        D.load_dataset("folder:@8")


@pytest.mark.parametrize("name", ["lsun", "celeba"])
def test_named_folders(tmp_path, name):
    write_pngs(tmp_path / name / "part", 4)
    ds = D.load_dataset(name, data_root=str(tmp_path))
    assert ds.spec.shape == (3, 64, 64) and ds.name == name and ds.source == str(tmp_path / name)


# ---- missing data and names -------------------------------------------------------
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "stl10", "imagenet32", "imagenet64",
                                  "lsun", "celeba"])
def test_missing_data_is_one_line_naming_every_place(tmp_path, monkeypatch, name):
    root, env = tmp_path / "root", tmp_path / "env"
    (root / name).mkdir(parents=True)                 # an empty dataset folder: "lacks ..."
    monkeypatch.setenv(D.ENV_VAR, str(env))
    with pytest.raises(D.DatasetNotFoundError) as err:
        D.load_dataset(name, data_root=str(root))
    msg = _one_line(err)
    assert isinstance(err.value, FileNotFoundError) and repr(name) in msg
    assert "to get it:" in msg and str(root / name) in msg and str(env / name) in msg
    assert len(err.value.looked) >= 2 and all(p in msg for p in err.value.looked)
    if name == "fashion-mnist":
        assert str(tmp_path / "no-system-dir") in msg and "apt-get install dataset-fashion-mnist" in msg


def test_download_needs_a_root_and_a_downloader(tmp_path):
    with pytest.raises(D.DatasetNotFoundError, match="--data-root"):
        D.load_dataset("cifar10", download=True)      # nowhere to download to: fails before any network
    with pytest.raises(D.DatasetNotFoundError, match="not supported"):
        D.load_dataset("imagenet64", data_root=str(tmp_path), download=True)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        D.load_dataset("cifar100")
    msg = _one_line(err)
    assert all(n in msg for n in D.dataset_names())


def test_dataset_names():
    names = D.dataset_names()
    assert {"digits", "mnist", "fashion-mnist", "cifar10", "stl10", "imagenet32", "imagenet64",
            "lsun", "celeba"} <= set(names)
    assert names[-1] == "folder:PATH" and set(names[:-1]) == set(D.DATASETS.names())
