"""Evaluation of a trained cell through the metrics API (features once per sample set).

Everything here returns plain value dicts ``{"metric", "value", "extractor", "n", "extra"}``
that :func:`protocols.pipeline.rows` turns into store rows (the ``*_values`` names say so: the metrics
themselves are ``metrics.heldout_bpd``, ``metrics.gan_train_test`` and ``metrics.subset_sensitivity``).  The real reference set of
every sample metric is the dataset's held-out test split (the paper evaluates on held-out data);
the domain extractor is trained once per dataset on its train split (seed 0) and cached.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import torch

import metrics
import metrics.images
from common.io import atomic_write
from metrics import keys as K
from models.base import GenerativeModel, quantize, to_unit

from . import distributed as D
from .base import Context
from .config import RunConfig

#: metric keys -> the registered metric that produces them
PRODUCER = {K.FID: "fid", K.KID: "kid", K.IS: "is", K.IS_STD: "is", K.PRD_F8: "prd", K.PRD_F1_8: "prd",
            K.PRD_AUC: "prd", K.PRECISION: "prdc", K.RECALL: "prdc", K.DENSITY: "prdc", K.COVERAGE: "prdc",
            K.CLASS_KL: "classes", K.CLASSES_LOW: "classes"}
#: class coverage (metrics/classes.py): measured wherever the features come from the domain classifier
CLASS_KEYS = {K.CLASS_KL, K.CLASSES_LOW}
#: issue 36: diversity, MMD and the memorization tests in the cell's feature space (metrics/suite.py)
PRODUCER.update({K.MMD: "mmd", K.VENDI: "vendi", K.AUTHPCT: "authpct", K.C_T: "ct", K.FLD: "fld", K.FLD_GAP: "fld"})
#: the keys that compare samples with the training split (a fixed seeded subset of it, :func:`memo_train`)
MEMO_KEYS = {K.AUTHPCT, K.C_T, K.FLD, K.FLD_GAP}
NEAREST_FILE = "nearest_train.png"     # the first samples (top row) over their nearest training images (bottom)
CT_MIN_POINTS = 61                     # fewer test images or samples than this: no C_T (3 cells x > 20 each)


def extractor_name(ctx: Context, cfg: RunConfig, name: Optional[str] = None) -> str:
    """The extractor a cell's sample metrics use: ``domain`` on data without labels is the self-supervised one."""
    name = name or cfg.eval.extractor
    return "selfsup" if name == "domain" and ctx.dataset.train_y is None else name


def extractor_for(ctx: Context, cfg: RunConfig, name: Optional[str] = None):
    """The cell's feature extractor (or the named one: ``dinov2`` / ``clip`` from ``eval.*_weights``), built once
    per process (a domain or self-supervised net trains with the cell's threads)."""
    name = extractor_name(ctx, cfg, name)
    weights = {"inception": cfg.eval.inception_weights, "dinov2": cfg.eval.dinov2_weights,
               "clip": cfg.eval.clip_weights}.get(name) or None
    key = (name, weights, cfg.train.threads)
    if key not in ctx._extractors:
        torch.set_num_threads(cfg.train.threads)
        ds = ctx.dataset
        if name == "selfsup":
            ctx._extractors[key] = metrics.SelfSupExtractor.fit_or_load(
                ds.train_x, ds.levels, seed=0, cache_dir=_cache(ctx), dataset_hash=ds.content_hash, test_x=ds.test_x,
                device=ctx.device, progress=ctx.progress and D.is_main())
            return ctx._extractors[key]
        train = (ds.train_x, ds.train_y) if name == "domain" else None
        held = (ds.test_x, ds.test_y) if name == "domain" else None
        ctx._extractors[key] = metrics.load_extractor(
            name, levels=ds.levels, seed=0, cache_dir=_cache(ctx), inception_weights=weights, train=train,
            heldout=held, device=ctx.device, progress=ctx.progress and D.is_main(), weights=weights)
    return ctx._extractors[key]


def _cache(ctx: Context):
    return None if ctx.cache_dir is None else Path(ctx.cache_dir)


def metric_params(cfg: RunConfig) -> Dict[str, int]:
    """The metrics' parameters of a cell, from its config."""
    return {"prd_clusters": cfg.eval.prd_clusters, "prd_runs": cfg.eval.prd_runs, "prdc_k": cfg.eval.prdc_k}


def _extractor_extra(ext) -> Dict[str, Any]:
    extra: Dict[str, Any] = {"extractor_id": ext.id}
    if getattr(ext, "accuracy", None) is not None:
        extra["extractor_accuracy"] = round(float(ext.accuracy), 4)
    if getattr(ext, "label", None):                       # the self-supervised space says what it is
        extra["extractor_label"], extra["extractor_quality"] = ext.label, ext.quality
    weights = ext.identity().get("weights") if hasattr(ext, "identity") else None
    if weights:                                           # dinov2 / clip: the published file, or the warning
        extra["extractor_weights"] = weights
    return extra


def row_extractor(ext) -> str:
    """The ``extractor`` of a store row: the name, or for dinov2 / clip the id with the file's hash (and
    '-unpublished' for a random or other file), so that their tables never pool two weight files."""
    return ext.id if ext.name in ("dinov2", "clip") else ext.name


def bpd_values(ctx: Context, cfg: RunConfig, model: GenerativeModel, images: Optional[int] = None,
               iw: bool = True) -> List[Dict[str, Any]]:
    """ELBO (k=1) and, when ``eval.iw_k`` > 0, importance-weighted held-out BPD; sharded over ranks.
    ``images``: the first that many test images (default ``eval.bpd_images``, 0 = all)."""
    ds = ctx.dataset
    images = cfg.eval.bpd_images if images is None else images
    x = ds.test_x if images <= 0 else ds.test_x[:images]
    out = []
    for metric, k in ((K.BPD, 1), (K.BPD_IW, cfg.eval.iw_k if iw else 0)):
        if k < 1:
            continue
        shard = x[D.rank()::D.world_size()]
        bpd = metrics.heldout_bpd(model, shard, ds.levels, k=k, batch_size=cfg.eval.batch_size, seed=cfg.seed)
        if bpd is None:
            return out
        if D.world_size() > 1:
            t = torch.tensor([bpd * len(shard), float(len(shard))], dtype=torch.float64, device=ctx.device)
            torch.distributed.all_reduce(t)
            bpd = float(t[0] / t[1])
        out.append({"metric": metric, "value": bpd, "extractor": "", "n": len(x), "extra": {"k": k}})
    return out + content_bpd(ds, out)


def content_bpd(ds, values: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """For data padded to the models' resolution (Fashion-MNIST: 28x28 in 32x32), the same bound per dimension of
    the real content: total bits / (C x 28 x 28).  The model also pays for the (all-zero) border, so this is an
    upper bound on the content's bits per dimension, comparable with published 28x28 numbers."""
    from .datasets import DATASETS
    content = DATASETS.meta(ds.name).get("content") if ds.name in DATASETS else None
    side = ds.spec.resolution
    if not content or content == side:
        return []
    scale = (side * side) / (content * content)
    return [{**v, "metric": K.BPD_CONTENT, "value": v["value"] * scale,
             "extra": {**v["extra"], "content": f"{content}x{content} of {side}x{side}", "per_dim_of": "content"}}
            for v in values if v["metric"] == K.BPD]


def memo_train(ctx: Context, n: int) -> torch.Tensor:
    """The training images the memorization tests compare samples with: a fixed seeded subset (seed 0, the same
    for every cell) of ``n`` images of the train split (all of it when smaller)."""
    x = ctx.dataset.train_x
    if len(x) <= n:
        return x
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]]


def sample_metrics(ctx: Context, cfg: RunConfig, fake: torch.Tensor, run_dir: Path,
                   wanted: Iterable[str], extractor: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every wanted sample metric from one feature pass over ``fake`` (uint8 levels) and the test split (and, for
    the memorization keys, a subset of the train split as large as the test reference).  ``extractor``: another
    feature space than the cell's (``dinov2``).  Keys needing logits are left out where the extractor has none."""
    wanted = set(wanted)
    unknown = wanted - set(PRODUCER)
    if unknown:
        raise ValueError(f"no producer for metric key(s) {sorted(unknown)}")
    ext = extractor_for(ctx, cfg, extractor)
    real = ctx.dataset.test_x if cfg.eval.n_real <= 0 else ctx.dataset.test_x[: cfg.eval.n_real]
    probe = ext.embed(metrics.images.as_unit(real[:1], ctx.dataset.levels))
    if probe[1] is None:
        wanted = {k for k in wanted if metrics.METRICS.meta(PRODUCER[k])["needs"] != "logits"}
    if len(real) < CT_MIN_POINTS or len(fake) < CT_MIN_POINTS:
        wanted.discard(K.C_T)        # C_T's 3 cells each need test points and > 20 samples: too few here
    names = sorted({PRODUCER[k] for k in wanted})
    train = memo_train(ctx, len(real)) if wanted & MEMO_KEYS else None
    res = metrics.evaluate_detailed(fake, real, levels=ctx.dataset.levels, extractor=ext, metrics=names,
                                    seed=cfg.seed, cache_dir=_cache(ctx), batch_size=cfg.eval.batch_size,
                                    out_dir=run_dir, params=metric_params(cfg), train=train)
    if "prd" in res.curves and run_dir is not None:
        precision, recall = res.curves["prd"]
        atomic_write(run_dir / "prd_curve.json", json.dumps(
            {"precision": [float(v) for v in precision], "recall": [float(v) for v in recall]}))
    if "nearest_train" in res.curves and run_dir is not None and extractor is None:
        save_nearest(ctx, fake, train, res.curves["nearest_train"][0], run_dir)
    extra = {**_extractor_extra(ext), "n_real": len(real), "feature_dim": int(probe[0].shape[1]), **metric_params(cfg)}
    if train is not None:
        extra["n_train_memo"] = len(train)
    keep = wanted | ({K.IS_STD} if K.IS in wanted else set())
    out = [{"metric": k, "value": v, "extractor": row_extractor(ext), "n": len(fake), "extra": extra}
           for k, v in res.values.items() if k in keep]
    if "classes" in res.curves:
        shares = _class_extra(ctx, *res.curves["classes"])
        out = [{**v, "extra": {**v["extra"], **shares}} if v["metric"] in CLASS_KEYS else v for v in out]
    return out


def save_nearest(ctx: Context, fake: torch.Tensor, train: torch.Tensor, idx, run_dir: Path) -> None:
    """``nearest_train.png``: the first samples (top row) over their nearest training images in the cell's feature
    space (bottom row), for the page's gallery."""
    from torchvision.utils import save_image
    k = len(idx)
    grid = torch.cat([fake[:k], train[torch.as_tensor(idx)]])
    save_image(to_unit(grid, ctx.dataset.levels), run_dir / NEAREST_FILE, nrow=k, padding=1)


def pretrained_values(ctx: Context, cfg: RunConfig, fake: torch.Tensor, wanted: Iterable[str],
                      floor: bool = False) -> List[Dict[str, Any]]:
    """The sample metrics again in DINOv2 space (``eval.dinov2_weights``: FD_DINOv2 is its ``fid``) and CMMD
    (``eval.clip_weights``), each a table of its own on the page (rows keyed by the extractor's id)."""
    out: List[Dict[str, Any]] = []
    if cfg.eval.dinov2_weights:
        keys_ = (set(wanted) & set(PRODUCER)) - CLASS_KEYS - {K.IS, K.IS_STD} - (MEMO_KEYS if floor else set())
        out += sample_metrics(ctx, cfg, fake, None, keys_, extractor="dinov2")
    if cfg.eval.clip_weights:
        ext = extractor_for(ctx, cfg, "clip")
        real = ctx.dataset.test_x if cfg.eval.n_real <= 0 else ctx.dataset.test_x[: cfg.eval.n_real]
        res = metrics.evaluate_detailed(fake, real, levels=ctx.dataset.levels, extractor=ext, metrics=["mmd"],
                                        seed=cfg.seed, cache_dir=_cache(ctx), batch_size=cfg.eval.batch_size)
        out.append({"metric": K.CMMD, "value": res.values[K.MMD], "extractor": row_extractor(ext), "n": len(fake),
                    "extra": {**_extractor_extra(ext), "n_real": len(real)}})
    return out


def bpd_gap_values(ctx: Context, cfg: RunConfig, model: GenerativeModel,
                   done: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Held-out BPD minus training BPD (ELBO, the same number of images: the first of the train split, the same
    noise seed): > 0 is a density model fitting its training images better than new ones (overfitting)."""
    test = next((v for v in done if v["metric"] == K.BPD), None)
    if test is None:
        return []
    ds, n = ctx.dataset, int(test["n"])
    shard = ds.train_x[:n][D.rank()::D.world_size()]
    bpd = metrics.heldout_bpd(model, shard, ds.levels, k=1, batch_size=cfg.eval.batch_size, seed=cfg.seed)
    if bpd is None:
        return []
    if D.world_size() > 1:
        t = torch.tensor([bpd * len(shard), float(len(shard))], dtype=torch.float64, device=ctx.device)
        torch.distributed.all_reduce(t)
        bpd = float(t[0] / t[1])
    return [{"metric": K.BPD_GAP, "value": test["value"] - bpd, "extractor": "", "n": n,
             "extra": {"train_bpd": bpd, "test_bpd": test["value"], "train_images": "first n of the train split"}}]


def class_keys(cfg: RunConfig) -> set:
    """The class-coverage keys when the cell's features come from a classifier of the dataset's labels."""
    return set(CLASS_KEYS) if cfg.eval.extractor == "domain" else set()


def _class_extra(ctx: Context, fake_shares, real_shares) -> Dict[str, Any]:
    from .datasets import DATASETS
    name = ctx.dataset.name
    names = DATASETS.meta(name).get("class_names") if name in DATASETS else None
    return {"shares": [round(float(v), 5) for v in fake_shares], "real_shares": [round(float(v), 5) for v in real_shares],
            "class_names": list(names) if names else [str(i) for i in range(len(real_shares))]}


def kl_values(ctx: Context, cfg: RunConfig, model: GenerativeModel, images: int) -> List[Dict[str, Any]]:
    """KL(q(z|x) || p(z)) in nats per image on the first ``images`` test images (how much the latents carry), for a
    model that reports it (``model.kl``; None: no encoder yet or none at all)."""
    fn = getattr(model, "kl", None)
    x = ctx.dataset.test_x[:images] if images > 0 else ctx.dataset.test_x
    if fn is None or not D.is_main():
        return []
    torch.manual_seed(cfg.seed + 30_000)
    total, n = 0.0, 0
    for s in range(0, len(x), cfg.eval.batch_size):
        kl = fn(x[s:s + cfg.eval.batch_size].to(model.device))
        if kl is None:
            return []
        total, n = total + float(kl.double().sum()), n + len(kl)
    return [{"metric": K.KL_PER_IMAGE, "value": total / n, "extractor": "", "n": n, "extra": {"units": "nats/image"}}]


@torch.no_grad()
def save_figures(ctx: Context, model: GenerativeModel, fake, run_dir: Path) -> None:
    """``samples.png`` (8x8 grid) and, with an encoder, ``reconstructions.png`` (real rows over recon rows)."""
    from torchvision.utils import save_image
    levels = ctx.dataset.levels
    if fake is None:
        labels = None
        if getattr(model, "conditional", False) and ctx.dataset.n_classes:
            labels = torch.arange(64, device=model.device) % ctx.dataset.n_classes
        fake = quantize(model.sample(64, labels=labels).float().cpu(), levels)
    save_image(to_unit(fake[:64], levels), run_dir / "samples.png", nrow=8, padding=1)
    if model.has_encoder:
        x = ctx.dataset.test_x[:32].to(model.device)
        if getattr(model, "conditional", False) and ctx.dataset.test_y is not None:
            rec = model.reconstruct(x, labels=ctx.dataset.test_y[:32].to(model.device))
        else:
            rec = model.reconstruct(x)
        rec = rec.float().clamp(0, 1).cpu()
        grid = torch.cat([to_unit(x.cpu(), levels), to_unit(quantize(rec, levels), levels)])
        save_image(grid, run_dir / "reconstructions.png", nrow=8, padding=1)


#: the class gallery: this many samples labelled by the domain classifier, up to ``GALLERY_PER_CLASS`` shown per class
GALLERY_SAMPLES, GALLERY_PER_CLASS = 2000, 10


@torch.no_grad()
def save_class_gallery(ctx: Context, cfg: RunConfig, fake: torch.Tensor, run_dir: Path) -> None:
    """``samples_by_class.png``: one row per class of the domain classifier (the first ``GALLERY_PER_CLASS`` samples
    it gives that label; a row left grey is a class the model did not generate among the first
    ``GALLERY_SAMPLES``), and ``samples_by_class.json`` with each row's class name, count and share."""
    from torchvision.utils import save_image
    if not class_keys(cfg) or ctx.dataset.train_y is None:     # no labels: the self-supervised space has no classes
        return
    ext, levels = extractor_for(ctx, cfg), ctx.dataset.levels
    x = fake[:GALLERY_SAMPLES]
    labels = ext.embed(metrics.images.as_unit(x, levels))[1].argmax(dim=1)
    n_classes = ctx.dataset.n_classes
    names = _class_extra(ctx, [0.0] * n_classes, [0.0] * n_classes)["class_names"]
    tiles, counts = [], []
    blank = torch.full(x.shape[1:], 0.5)
    for c in range(n_classes):
        mine = x[labels == c][:GALLERY_PER_CLASS]
        counts.append(int((labels == c).sum()))
        row = [to_unit(img, levels) for img in mine] + [blank] * (GALLERY_PER_CLASS - len(mine))
        tiles += row
    save_image(torch.stack(tiles), run_dir / "samples_by_class.png", nrow=GALLERY_PER_CLASS, padding=1, pad_value=1.0)
    atomic_write(run_dir / "samples_by_class.json", json.dumps(
        {"class_names": names, "counts": counts, "n": len(x), "shares": [c / len(x) for c in counts]}, indent=1))


def gan_train_test_values(ctx: Context, cfg: RunConfig, model: GenerativeModel, run_dir: Path) -> List[Dict[str, Any]]:
    ds = ctx.dataset
    res = metrics.gan_train_test(model, ds.train_x, ds.train_y, ds.test_x, ds.test_y, ds.levels,
                                 seeds=tuple(range(cfg.eval.gan_seeds)), cache_dir=_cache(ctx),
                                 dataset_hash=ds.content_hash, device=ctx.device, progress=ctx.progress,
                                 sample_batch_size=cfg.eval.batch_size)
    atomic_write(run_dir / "gan_train_test.json", json.dumps(
        {"mean": res.mean, "std": res.std, "per_seed": res.per_seed, "n_generated": res.n_generated}, indent=2))
    return [{"metric": k, "value": v, "extractor": "classifier", "n": res.n_generated,
             "extra": {"std_over_classifier_seeds": res.std[k], "classifier_seeds": cfg.eval.gan_seeds}}
            for k, v in res.mean.items()]


def sensitivity_values(ctx: Context, cfg: RunConfig, fraction: float) -> List[Dict[str, Any]]:
    """Table 7: IS and FID of a random ``fraction`` of the real train split against the whole split."""
    ext = extractor_for(ctx, cfg)
    rows = metrics.subset_sensitivity(ctx.dataset.train_x, ctx.dataset.levels, ext, fractions=(fraction,),
                                      seed=cfg.seed, cache_dir=_cache(ctx), batch_size=cfg.eval.batch_size)
    n_full = len(ctx.dataset.train_x)
    out = []
    for r in rows:
        extra = {**_extractor_extra(ext), "subset_size": r["n"], "fraction": r["fraction"]}
        out += [{"metric": K.IS, "value": r[K.IS], "extractor": ext.name, "n": n_full, "extra": extra},
                {"metric": K.FID, "value": r[K.FID], "extractor": ext.name, "n": n_full, "extra": extra}]
    return out


# ---- sampling cost (the third axis: coverage, quality, cost) ---------------------------------------------------
def _samples_per_s(model: GenerativeModel, batch: int, min_time: float) -> float:
    """Samples per second of ``model.sample(batch)`` after one warm-up call, timed for at least ``min_time``."""
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        model.sample(batch)
        sync()
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < min_time:
            model.sample(batch)
            sync()
            n += batch
    return n / (time.perf_counter() - t0)


def sampling_cost_values(ctx: Context, cfg: RunConfig, model: GenerativeModel, rounds: int = 3,
                         min_time: float = 0.5) -> List[Dict[str, Any]]:
    """Samples/s of the model and, alternately in the same process, of the GAN of the same budget and data (its
    generator is the paper's common one; untrained, since speed does not depend on the weights): the ratio is
    the cost axis, comparable across machines; network evaluations per sample beside it.

    The reference runs as the model does: on its device and in the memory format the trainer gave the model
    (``train.channels_last``), so that a format's speed-up is not counted as the model's.  Medians of ``rounds``
    alternating pairs."""
    from models import build_model
    from .config import resolve
    gan_cfg = resolve("gan", dataset=cfg.dataset, budget=cfg.budget, overrides={"train.threads": cfg.train.threads,
                                                                                  "train.device": cfg.train.device})
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gan = build_model("gan", gan_cfg.model_cfg, ctx.dataset.spec).to(model.device).eval()
        gan = gan.to(memory_format=fmt)
        batch = min(64, cfg.eval.batch_size)
        pairs = [(_samples_per_s(gan, batch, min_time), _samples_per_s(model, batch, min_time))
                 for _ in range(rounds)]
    extra = {"device": str(model.device), "threads": cfg.train.threads, "batch": batch,
             "channels_last": bool(cfg.train.channels_last),
             "gan_samples_per_s": [round(g, 3) for g, _ in pairs], "model_samples_per_s": [round(m, 3) for _, m in pairs]}
    return [{"metric": K.SAMPLES_PER_S, "value": statistics.median(m for _, m in pairs), "n": batch, "extra": extra},
            {"metric": K.SPEED_VS_GAN, "value": statistics.median(m / g for g, m in pairs), "n": batch,
             "extra": extra},
            {"metric": K.NFE, "value": float(getattr(model, "nfe_per_sample", 1)), "n": 0, "extra": {}}]


def steps_curve_values(ctx: Context, cfg: RunConfig, model: GenerativeModel, steps, run_dir: Path
                       ) -> List[Dict[str, Any]]:
    """FID of a step-based sampler (a diffusion model's ``sample_steps``) at each of ``steps``, from the same
    number of samples and the same reference as its main FID: the steps-vs-FID curve."""
    import dataclasses
    out, default = [], model.cfg
    try:
        for k in steps:
            model.cfg = dataclasses.replace(default, sample_steps=int(k))
            torch.manual_seed(cfg.seed + 10_000)
            from .pipeline import sample_images
            fake = quantize(sample_images(model, cfg.eval.n_samples, cfg.eval.batch_size), ctx.dataset.levels)
            if D.is_main():
                (v,) = [x for x in sample_metrics(ctx, cfg, fake, run_dir, {K.FID}) if x["metric"] == K.FID]
                out.append({**v, "metric": K.fid_at_steps(k), "extra": {**v["extra"], "sample_steps": int(k)}})
    finally:
        model.cfg = default
    return out


# ---- snapshots along training and the two sampling conventions -------------------------------------------
SNAPSHOT_METRICS = (K.FID, K.KID, K.RECALL, K.BPD, K.KL_PER_IMAGE, K.CLASS_KL, K.CLASSES_LOW)


def snapshot_values(ctx: Context, cfg: RunConfig, model: GenerativeModel) -> List[Dict[str, Any]]:
    """The cheap metrics of a snapshot: FID, KID, recall (prdc) and, with the domain classifier, class coverage of
    ``eval.snapshot_samples`` samples against the test split (the same extractor and reference as the final
    values), BPD (ELBO) and the KL per image on the first ``eval.snapshot_bpd_images`` test images with fixed
    noise.  A model without a density yet (the GAN before its inference stage) has no BPD and no KL."""
    from .pipeline import sample_images
    out = bpd_values(ctx, cfg, model, images=cfg.eval.snapshot_bpd_images, iw=False)
    out = [v for v in out if v["metric"] == K.BPD]
    out += kl_values(ctx, cfg, model, cfg.eval.snapshot_bpd_images)
    torch.manual_seed(cfg.seed + 20_000)
    fake = sample_images(model, cfg.eval.snapshot_samples, cfg.eval.batch_size)
    if D.is_main():
        fake = quantize(fake, ctx.dataset.levels)
        wanted = {K.FID, K.KID, K.RECALL} | class_keys(cfg)
        if cfg.eval.snapshot_samples <= cfg.eval.prdc_k:
            wanted.discard(K.RECALL)
        out += sample_metrics(ctx, cfg, fake, None, wanted)
    return out


def convention_values(ctx: Context, cfg: RunConfig, model: GenerativeModel, own: List[Dict[str, Any]]
                      ) -> List[Dict[str, Any]]:
    """For a model that can decode its samples with or without the decoder's noise (``sample_noise``): FID under
    both conventions, ``fid_mean`` and ``fid_noise``, from the same seed and count as its main FID (which is
    the one under its own convention, copied here)."""
    import dataclasses
    from .pipeline import sample_images
    mode = getattr(model.cfg, "sample_noise", None)
    if mode not in ("mean", "gaussian"):
        return []
    key = {"mean": K.FID_MEAN, "gaussian": K.FID_NOISE}
    other = "gaussian" if mode == "mean" else "mean"
    out = [{**v, "metric": key[mode], "extra": {**v["extra"], "sample_noise": mode, "own": True}}
           for v in own if v["metric"] == K.FID]             # rank 0 holds it; every rank samples below
    default = model.cfg
    try:
        model.cfg = dataclasses.replace(default, sample_noise=other)
        torch.manual_seed(cfg.seed + 10_000)
        fake = sample_images(model, cfg.eval.n_samples, cfg.eval.batch_size)
    finally:
        model.cfg = default
    if D.is_main():
        (v,) = [x for x in sample_metrics(ctx, cfg, quantize(fake, ctx.dataset.levels), None, {K.FID})
                if x["metric"] == K.FID]
        out.append({**v, "metric": key[other], "extra": {**v["extra"], "sample_noise": other, "own": False}})
    return out
