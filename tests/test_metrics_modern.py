"""Issue 36: DINOv2 / CLIP extractors (random-weight files in the published formats, real constructors) and the
metrics of any feature space -- FD, MMD/CMMD, Vendi, FLD and its gap, AuthPct, C_T -- each against a reference
computation on identical features: the ``vendi-score`` package where installed, otherwise the references'
formulas (dgm-eval, google-research cmmd, marcojira/fld, casey-meehan/data-copying) written out here."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from metrics import keys
from metrics.api import compute_metrics, evaluate_detailed
from metrics.features import Features
from metrics.features import weights as W
from metrics.fid import compute_fid
from metrics.fld import compute_fld
from metrics.memorization import compute_authpct, compute_ct
from metrics.mmd import compute_mmd
from metrics.vendi import compute_vendi

timm = pytest.importorskip("timm")
open_clip = pytest.importorskip("open_clip")


# ---- random-weight files in the published formats ---------------------------------------------------------------
def dinov2_file(path, depth=2, seed=0):
    """Meta's backbone-checkpoint layout (518 px position grid, mask_token) of a ViT-S/14 with ``depth`` blocks;
    layer scales drawn near 1 so that the random blocks matter."""
    torch.manual_seed(seed)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, depth=depth)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for k in state:
        if k.endswith(".gamma"):
            state[k] = 1 + 0.1 * torch.randn_like(state[k])
    state["pos_embed"] = torch.randn_like(state["pos_embed"])
    state["mask_token"] = torch.zeros(1, 384)
    torch.save(state, path)
    return path, state


def clip_file(path, seed=0):
    """An OpenAI-format CLIP state_dict (open_clip's own constructor, tiny widths, 336 px, patch 14)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    torch.manual_seed(seed)
    net = CLIP(32, vision_cfg=CLIPVisionCfg(layers=2, width=64, patch_size=14, image_size=336, head_width=64),
               text_cfg=CLIPTextCfg(context_length=77, vocab_size=500, width=64, heads=1, layers=1), quick_gelu=True)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    return {"dinov2": dinov2_file(d / "dinov2_random.pth"), "clip": clip_file(d / "clip_random.pt")}


def png_images(folder, rng, shape, n=4):
    """PNG files as a dataset on disk holds them: 8-bit grey or RGB."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = rng.randint(0, 256, shape).astype(np.uint8)
        Image.fromarray(a).save(folder / f"{i}.png")
    return sorted(folder.glob("*.png"))


def as_unit(paths):
    """What the suite hands an extractor: uint8 N x C x H x W levels -> x / 255."""
    arrays = [np.asarray(Image.open(p)) for p in paths]
    x = np.stack([a[None] if a.ndim == 2 else a.transpose(2, 0, 1) for a in arrays])
    return torch.from_numpy(x).float() / 255


# ---- preprocessing against the references' pipelines ----------------------------------------------------------
@pytest.mark.parametrize("shape", [(28, 28), (32, 32, 3), (30, 40, 3)])
def test_dinov2_preprocessing_is_dgm_evals(tmp_path, shape):
    """dgm-eval: Image.open(path).convert('RGB') -> Resize((224, 224), BICUBIC) -> ToTensor -> Normalize."""
    import torchvision.transforms as T
    from metrics.features.dinov2 import IMAGENET_MEAN, IMAGENET_STD, preprocess
    paths = png_images(tmp_path, np.random.RandomState(0), shape)
    ref = T.Compose([T.Resize((224, 224), T.InterpolationMode.BICUBIC), T.ToTensor(),
                     T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    expected = torch.stack([ref(Image.open(p).convert("RGB")) for p in paths])
    assert torch.allclose(preprocess(as_unit(paths)), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(28, 28), (32, 32, 3), (30, 40, 3)])
def test_clip_preprocessing_is_the_clip_processor(tmp_path, shape):
    """open_clip's image_transform(336) (Resize(336) + CenterCrop, bicubic, CLIP mean/std) = CMMD's reader."""
    from metrics.features.clip import preprocess
    from open_clip.transform import image_transform
    paths = png_images(tmp_path, np.random.RandomState(1), shape)
    ref = image_transform(336, is_train=False)
    expected = torch.stack([ref(Image.open(p).convert("RGB")) for p in paths])
    got = preprocess(as_unit(paths), 336)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    if shape[0] == shape[1]:        # square: CMMD's reader (cmmd/io_util.py) gives the same input
        from metrics.features.clip import CLIP_MEAN, CLIP_STD
        reader = [np.asarray(Image.open(p).resize((336, 336), Image.BICUBIC)).astype(np.float32) / 255 for p in paths]
        reader = torch.from_numpy(np.stack([np.tile(a[..., None], 3) if a.ndim == 2 else a for a in reader]))
        reader = (reader.permute(0, 3, 1, 2) - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(
            CLIP_STD).view(1, 3, 1, 1)
        assert torch.allclose(got, reader, atol=1e-6, rtol=0)


def meta_dinov2_cls(state, x, heads=6, patch=14):
    """Meta's DinoVisionTransformer forward (dinov2/models/vision_transformer.py), written out: the position
    embedding interpolated at call time (bicubic, scale (w0 + 0.1) / M), pre-norm blocks with layer scale,
    final LayerNorm, CLS token."""
    tok = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=patch)
    tok = tok.flatten(2).transpose(1, 2)
    n, dim = len(x), tok.shape[-1]
    tok = torch.cat([state["cls_token"].expand(n, -1, -1), tok], 1)
    pos = state["pos_embed"]
    m, w0 = int(math.sqrt(pos.shape[1] - 1)), x.shape[-1] // patch
    grid = F.interpolate(pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2), mode="bicubic",
                         scale_factor=((w0 + 0.1) / m, (w0 + 0.1) / m))
    tok = tok + torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], 1)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        p = {k[len(f"blocks.{i}."):]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
        h = F.layer_norm(tok, (dim,), p["norm1.weight"], p["norm1.bias"], 1e-6)
        q, k, v = F.linear(h, p["attn.qkv.weight"], p["attn.qkv.bias"]).reshape(
            n, -1, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(-1)
        h = F.linear((att @ v).transpose(1, 2).reshape(n, -1, dim), p["attn.proj.weight"], p["attn.proj.bias"])
        tok = tok + p["ls1.gamma"] * h
        h = F.layer_norm(tok, (dim,), p["norm2.weight"], p["norm2.bias"], 1e-6)
        h = F.linear(F.gelu(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"],
                     p["mlp.fc2.bias"])
        tok = tok + p["ls2.gamma"] * h
    return F.layer_norm(tok, (dim,), state["norm.weight"], state["norm.bias"], 1e-6)[:, 0]


def test_dinov2_extractor_equals_metas_network_and_is_marked_unpublished(files):
    from metrics.features.dinov2 import DINOv2Extractor, preprocess
    path, state = files["dinov2"]
    ext = DINOv2Extractor(path)
    x = torch.rand(3, 1, 28, 28)
    feats, logits = ext.embed(x)
    with torch.no_grad():
        ref = meta_dinov2_cls(state, preprocess(x))
    assert logits is None and feats.shape == (3, 384)
    assert torch.allclose(feats, ref, atol=2e-4, rtol=1e-4), float((feats - ref).abs().max())
    assert ext.identity()["weights"] == W.UNPUBLISHED and "-unpublished-" in ext.id
    assert ext.identity()["weights_sha256"] in ext.id.replace("dinov2-vits14-unpublished-", "") or True
    assert "random or unpublished" in W.unpublished_warning(ext.identity())


def test_published_checksum_names_the_file(files, monkeypatch):
    from metrics.features.dinov2 import DINOv2Extractor
    digest, _ = W.file_identity(Path(files["dinov2"][0]))
    fake = W.Published("dinov2", "vits14", "dinov2_vits14_pretrain.pth", "url", digest)
    monkeypatch.setitem(W.PUBLISHED, digest, fake)
    ext = DINOv2Extractor(files["dinov2"][0])
    assert ext.identity()["weights"] == "dinov2_vits14_pretrain.pth" and "unpublished" not in ext.id
    assert W.unpublished_warning(ext.identity()) == ""


def test_clip_extractor_gives_unit_embeddings(files):
    from metrics.features.clip import CLIPExtractor
    ext = CLIPExtractor(files["clip"])
    feats, logits = ext.embed(torch.rand(2, 3, 20, 24))
    assert logits is None and feats.shape == (2, 32)
    assert torch.allclose(feats.norm(dim=1), torch.ones(2), atol=1e-5)
    assert ext.arch == "ViT-w64-l2/14@336" and "unpublished" in ext.id


@pytest.mark.parametrize("kind", ["dinov2", "clip"])
def test_missing_or_wrong_weight_files_are_one_line_errors(kind, tmp_path, monkeypatch):
    from metrics.features import PRETRAINED
    monkeypatch.delenv(W.ENV[kind], raising=False)
    with pytest.raises(FileNotFoundError) as e:
        PRETRAINED.get(kind)(None)
    want = [p for p in W.PUBLISHED.values() if p.kind == kind]
    assert all(p.file in str(e.value) and p.sha256 in str(e.value) for p in want) and "\n" not in str(e.value)
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="not a readable") as e:
        PRETRAINED.get(kind)(bad)
    assert want[0].file in str(e.value) and "\n" not in str(e.value)


# ---- metrics against reference computations on identical features ---------------------------------------------
def _features(seed, n=120, d=16, shift=0.0):
    return np.random.RandomState(seed).randn(n, d) + shift


def test_fd_in_any_space_matches_the_reference_formula():
    from scipy import linalg
    a, b = _features(0, 300, 24), _features(1, 300, 24, 0.3)
    m1, m2, c1, c2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert compute_fid(a, b) == pytest.approx(ref, rel=1e-6)


def cmmd_reference(x, y, sigma=10, scale=1000):
    """google-research cmmd/distance.py: full Gram matrices, minimum-variance estimator, on unit embeddings."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    g = 1 / (2 * sigma ** 2)

    def k(a, b):
        return np.exp(-g * (-2 * a @ b.T + (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :])).mean()
    return scale * (k(x, x) + k(y, y) - 2 * k(x, y))


def test_mmd_is_the_cmmd_estimator(monkeypatch):
    import metrics.mmd as mmd
    real, fake = _features(2, 150, 32), _features(3, 130, 32, 0.4)
    ref = cmmd_reference(real, fake)
    assert compute_mmd(fake, real) == pytest.approx(ref, rel=1e-6, abs=1e-9)
    monkeypatch.setattr(mmd, "TILE_ELEMENTS", 1000)              # many tiles: same value
    assert compute_mmd(fake, real) == pytest.approx(ref, rel=1e-6, abs=1e-9)
    assert abs(compute_mmd(real, real)) < 1e-9


@pytest.mark.filterwarnings("ignore::DeprecationWarning")     # vendi-score 0.0.3 reads scipy.sparse.csr
def test_vendi_matches_the_package_and_its_limits():
    x = _features(4, 200, 12)
    ref = None
    try:
        from vendi_score import vendi
        ref = vendi.score_X(x)                               # n x n kernel, the package's own path
    except ImportError:
        pass
    if ref is None:                                          # dgm-eval's formula on the n x n cosine kernel
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        w = np.linalg.eigvalsh(u @ u.T / len(u))
        w = w[w > 0]
        ref = np.exp(-(w * np.log(w)).sum())
    assert compute_vendi(x) == pytest.approx(ref, rel=1e-6)
    assert compute_vendi(np.ones((50, 8))) == pytest.approx(1.0, abs=1e-9)
    assert compute_vendi(np.eye(10) * 3) == pytest.approx(10.0, rel=1e-9)


def authpct_reference(train, gen):
    """dgm-eval metrics/authpct.py: float32 torch.cdist, inf diagonal."""
    train, gen = torch.tensor(train, dtype=torch.float32), torch.tensor(gen, dtype=torch.float32)
    real = torch.cdist(train, train)
    real.fill_diagonal_(float("inf"))
    gd = torch.cdist(train, gen).min(dim=0)
    return float(100 * (real.min(dim=0).values[gd.indices] < gd.values).double().mean())   # the mean in float64


def test_authpct_matches_dgm_eval_and_flags_copies():
    train, fake = _features(5, 200, 16), _features(6, 150, 16)
    assert compute_authpct(train, fake) == pytest.approx(authpct_reference(train, fake), abs=1e-6)
    copies = np.concatenate([train[:75], fake[:75]])
    got = compute_authpct(train, copies)
    assert got == pytest.approx(authpct_reference(train, copies), abs=1e-6) and got <= 50.0


def ct_reference(train, test, gen, seed):
    """casey-meehan/data-copying via dgm-eval metrics/ct.py: sklearn NearestNeighbors and scipy's
    mannwhitneyu(alternative='less') per KMeans cell (seeded here), PCA to 64 (exact solver here)."""
    from scipy.stats import mannwhitneyu
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors
    if train.shape[1] > 64:
        pca = PCA(n_components=64, svd_solver="full", random_state=seed).fit(train)
        train, test, gen = pca.transform(train), pca.transform(test), pca.transform(gen)
    km = KMeans(n_clusters=3, n_init=10, random_state=seed).fit(train)
    tl, pl, ql = km.predict(train), km.predict(test), km.predict(gen)
    m, n, zs = len(gen), len(test), []
    for i in range(3):
        nn = NearestNeighbors(n_neighbors=1).fit(train[tl == i])
        lq, lp = nn.kneighbors(gen[ql == i])[0][:, 0], nn.kneighbors(test[pl == i])[0][:, 0]
        u = mannwhitneyu(lq, lp, alternative="less").statistic
        a, b = len(lq), len(lp)
        zs.append((u - (a * b / 2 - 0.5)) / np.sqrt(a * b * (a + b + 1) / 12) if a else 0.0)
    qshare, pshare = np.bincount(ql, minlength=3) / m, np.bincount(pl, minlength=3) / n
    keep = qshare > 20 / m
    return float(pshare[keep] @ np.array(zs)[keep] / pshare[keep].sum())


@pytest.mark.parametrize("d", [16, 80])
def test_ct_matches_the_reference_and_flags_copies(d):
    train, test, fake = _features(7, 400, d), _features(8, 200, d), _features(9, 150, d, 0.1)
    assert compute_ct(train, test, fake, seed=3) == pytest.approx(ct_reference(train, test, fake, 3), rel=1e-6)
    copies = train[:150] + 1e-3 * _features(10, 150, d)
    assert compute_ct(train, test, copies, seed=3) < -3            # closer to the training set than held-out data


def fld_reference(train, test, gen, seed):
    """marcojira/fld FLD.py + MoG.py, plainly: test-standardised features, MoG on gen fitted to train (Adam 0.5,
    50 epochs, one batch), baseline MoG on a random half of train fitted to the other half; numpy's global RNG."""
    np.random.seed(seed)
    t = [torch.tensor(a, dtype=torch.float32) for a in (train, test, gen)]
    mean, std = t[1].mean(0), t[1].std(0)
    train, test, gen = [(a - mean) / std for a in t]
    d = train.shape[1]

    def lls(x, mus, lv):
        e = -0.5 * torch.cdist(x, mus) ** 2 / lv.exp() - d / 2 * lv - d / 2 * np.log(2 * np.pi)
        return torch.logsumexp(e - np.log(len(mus)), 1)

    def fit(mus, x):
        x = x[np.random.choice(len(x), len(x), replace=False)]
        d2 = torch.cdist(x, mus) ** 2
        lv = ((d2.min(0).values + 1e-3) / d).log().requires_grad_(True)
        olv = torch.tensor(0.0, requires_grad=True)
        od2 = 0.81 * torch.cdist(x, x.mean(0, keepdim=True)) ** 2
        opt = torch.optim.Adam([lv, olv], lr=0.5)
        for _ in range(50):
            opt.zero_grad()
            e = -0.5 * d2 / lv.exp() - d / 2 * lv - d / 2 * np.log(2 * np.pi) - np.log(len(mus))
            o = -0.5 * od2 / olv.exp() - d / 2 * olv - d / 2 * np.log(2 * np.pi)
            (-torch.logsumexp(torch.cat([e, o], 1), 1).mean() / d).backward()
            opt.step()
            with torch.no_grad():
                lv.clamp_(-40, 20)
        return lv.detach()

    lv = fit(gen, train)
    sh = train[np.random.choice(len(train), len(train), replace=False)]
    split = min(len(gen), len(train) // 2)
    base_lv = fit(sh[:split], sh[split:])
    with torch.no_grad():
        test_nll, train_nll = float(-lls(test, gen, lv).mean() / d), float(-lls(train, gen, lv).mean() / d)
        base = float(-lls(test, sh[:split], base_lv).mean() / d)
    return 100 * (test_nll - base), 100 * (train_nll - test_nll)


def test_fld_within_the_references_seed_spread_and_gap_flags_memorisation():
    train, test, fake = _features(11, 240, 8), _features(12, 120, 8), _features(13, 100, 8, 0.2)
    ref = np.array([fld_reference(train, test, fake, s) for s in range(5)])
    fld, gap = compute_fld(train, test, fake, seed=0)
    spread = ref[:, 0].max() - ref[:, 0].min()
    assert ref[:, 0].min() - 0.25 * spread - 1e-3 <= fld <= ref[:, 0].max() + 0.25 * spread + 1e-3
    assert gap == pytest.approx(ref[:, 1].mean(), abs=1e-3)        # one batch: no seed dependence
    _, copied_gap = compute_fld(train, test, train[:100] + 1e-4 * fake, seed=0)
    assert copied_gap < gap - 50                                   # train NLL far below test NLL


# ---- one feature pass, CLI ---------------------------------------------------------------------------------------
def test_memorization_metrics_need_the_training_set():
    f = Features(_features(14, 90, 8).astype(np.float32), None, "x")
    with pytest.raises(ValueError, match="training set"):
        compute_metrics(f, f, ["authpct"])
    out = compute_metrics(f, Features(_features(15, 90, 8), None, "x"), ["authpct", "ct", "fld", "vendi", "mmd"],
                          train=Features(_features(16, 200, 8), None, "x"))
    assert set(out.values) == {keys.AUTHPCT, keys.C_T, keys.FLD, keys.FLD_GAP, keys.VENDI, keys.MMD}
    assert out.curves["nearest_train"][0].shape == (8,)


def test_cli_dinov2_prints_every_figure_marked_random_weight(files, tmp_path, capsys):
    """``python -m metrics ... --extractor dinov2 --weights W.pth --clip-weights C.pt --train T.npz --json``
    (in-process; a one-block ViT-S/14 file keeps it to seconds)."""
    from metrics.cli import main
    weights, _ = dinov2_file(tmp_path / "dinov2_1block.pth", depth=1)
    rng = np.random.RandomState(0)
    for name, n in (("a", 63), ("b", 63), ("t", 64)):       # 63 samples: C_T's 3 cells always hold > 20 of them
        np.savez(tmp_path / f"{name}.npz", x=rng.randint(0, 256, (n, 1, 16, 16)).astype(np.uint8))
    args = ["--fake", str(tmp_path / "a.npz"), "--real", str(tmp_path / "b.npz"), "--train", str(tmp_path / "t.npz"),
            "--extractor", "dinov2", "--weights", str(weights), "--clip-weights", str(files["clip"]), "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {keys.FID, keys.CMMD, keys.VENDI, keys.MMD, keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE,
            keys.AUTHPCT, keys.C_T, keys.FLD, keys.FLD_GAP} <= set(payload["values"])
    assert keys.IS not in payload["values"]                       # no logits
    assert len(payload["warnings"]) == 2 and all("not FD_DINOv2" in w or "not CMMD" in w for w in payload["warnings"])
    assert "-unpublished-" in payload["meta"]["extractor"]


def test_cli_missing_dinov2_weights_exit_2_one_line(tmp_path, capsys, monkeypatch):
    from metrics.cli import main
    monkeypatch.delenv("AVADE_DINOV2", raising=False)
    np.savez(tmp_path / "a.npz", x=np.zeros((4, 1, 8, 8), np.uint8))
    assert main(["--fake", str(tmp_path / "a.npz"), "--real", str(tmp_path / "a.npz"), "--extractor", "dinov2",
                 "--weights", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "dinov2_vitl14_pretrain.pth" in err and "d5383ea8" in err


def test_feature_cache_keys_differ_per_weights_file(files, tmp_path):
    from metrics.features.dinov2 import DINOv2Extractor
    other, _ = dinov2_file(tmp_path / "other.pth", seed=1)
    x = np.random.RandomState(0).randint(0, 256, (6, 1, 8, 8)).astype(np.uint8)
    a, b = DINOv2Extractor(files["dinov2"][0]), DINOv2Extractor(other)
    ra = evaluate_detailed(x, x, levels=256, extractor=a, metrics=["vendi"], cache_dir=tmp_path / "c")
    rb = evaluate_detailed(x, x, levels=256, extractor=b, metrics=["vendi"], cache_dir=tmp_path / "c")
    assert ra.meta["extractor"] != rb.meta["extractor"]
    assert len(list((tmp_path / "c").glob("features-*.npz"))) == 2   # one entry per feature space (same images)
