"""The registered metrics: each names its variant and calls a generic ``compute_*`` (STYLE habit 2).

Sample counts are the caller's (budgets fix them); every function takes the fake and real
:class:`~metrics.features.Features` of one extractor, the evaluation seed and the resolved metric
parameters (:data:`DEFAULT_PARAMS`, overridden by the caller: configuration keys ``eval.prd_clusters``,
``eval.prd_runs``, ``eval.prdc_k``; CLI ``--prd-clusters``, ``--prd-runs``, ``--prdc-k``).

Shared work.  Inside :func:`evaluation_scope` (``metrics.api.compute_metrics`` opens one), KID and prdc
requested together come from one tiled pass over the Gram matrices (prdc's distances and KID's kernel
sums, metrics/kid.py ``KidFromGrams``) when that is cheaper than KID's own products (high-dimensional
features: 2048-d Inception at 10k samples); otherwise, and alone, each is computed by its own
``compute_*``.  The values agree up to summation order (tests/test_metrics_api_cli.py).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from numbers import Integral
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

from . import keys
from .fid import compute_fid
from .classes import compute_class_coverage
from .inception_score import compute_inception_score, probabilities_from_logits
from .kid import KidFromGrams, compute_kid, shared_grams_are_cheaper
from .prd import compute_prd_metrics
from .prdc import compute_prdc
from .registry import register_metric

DEFAULT_PARAMS: Dict[str, int] = {
    "prd_clusters": 20,   # k-means clusters of PRD's histograms (Sajjadi et al.)
    "prd_runs": 10,       # PRD clusterings averaged
    "prdc_k": 5,          # nearest neighbours of precision/recall/density/coverage (Naeem et al.)
}
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000

_SCOPE: ContextVar[Optional[dict]] = ContextVar("metrics_evaluation_scope", default=None)


@contextmanager
def evaluation_scope(metrics: Sequence[str]) -> Iterator[None]:
    """While open, the registered metrics in ``metrics`` may share work computed for one of them."""
    token = _SCOPE.set({"metrics": set(metrics)})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def _kid_and_prdc(fake, real, seed, params) -> Optional[dict]:
    """{"kid": value, "prdc": dict} from one tiled pass, when the open scope asks for both; else None."""
    scope = _SCOPE.get()
    if scope is None or not {"kid", "prdc"} <= scope["metrics"] or not shared_grams_are_cheaper(
            len(fake), len(real), fake.features.shape[1], KID_SUBSET_SIZE):
        return None
    key = (id(fake), id(real), seed, params["prdc_k"])
    if scope.get("pairwise", (None,))[0] != key:
        kid = KidFromGrams(len(fake), len(real), fake.features.shape[1], num_subsets=KID_SUBSETS,
                           max_subset_size=KID_SUBSET_SIZE, seed=seed)
        prdc = compute_prdc(real.features, fake.features, nearest_k=params["prdc_k"], gram_hook=kid)
        scope["pairwise"] = (key, {"kid": kid.value(), "prdc": prdc})
    return scope["pairwise"][1]


def resolve_params(params: Optional[Mapping[str, Any]] = None) -> Dict[str, int]:
    """:data:`DEFAULT_PARAMS` updated by ``params``; unknown keys and values that are not ints >= 1 are errors."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown metric parameter(s) {', '.join(map(repr, unknown))}; "
                         f"valid parameters: {', '.join(DEFAULT_PARAMS)}")
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"metric parameter {name} must be an integer >= 1, got {value!r}")
    return {**DEFAULT_PARAMS, **{name: int(value) for name, value in params.items()}}


def check_sizes(params: Mapping[str, int], metrics: Sequence[str], n_fake: int, n_real: int) -> None:
    """Parameters that the sample counts bound: prdc_k < points per set (when prdc is computed)."""
    if "prdc" in metrics and params["prdc_k"] >= min(n_fake, n_real):
        raise ValueError(f"prdc_k={params['prdc_k']} needs more than {params['prdc_k']} points per set, got "
                         f"{n_fake} fake and {n_real} real; lower prdc_k or add samples")


@register_metric("fid", keys=(keys.FID,), description="Frechet distance (Eq. 15), all fake vs all real features")
def fid_all(fake, real, seed, params):
    return {keys.FID: compute_fid(fake.features, real.features)}


@register_metric("kid", keys=(keys.KID,), description="KID, cubic kernel, 100 seeded subsets of <= 1000")
def kid_100_subsets(fake, real, seed, params):
    shared = _kid_and_prdc(fake, real, seed, params)
    if shared is not None:
        return {keys.KID: shared["kid"]}
    return {keys.KID: compute_kid(fake.features, real.features, num_subsets=KID_SUBSETS,
                                  max_subset_size=KID_SUBSET_SIZE, seed=seed)}


@register_metric("is", keys=(keys.IS, keys.IS_STD), needs="logits", description="IS (Eq. 14) of the fakes, 10 splits")
def is_10_splits(fake, real, seed, params):
    mean, std = compute_inception_score(probabilities_from_logits(fake.logits), splits=10, shuffle_seed=seed)
    return {keys.IS: mean, keys.IS_STD: std}


@register_metric("prd", keys=(keys.PRD_F8, keys.PRD_F1_8, keys.PRD_AUC),
                 description="PRD (Sajjadi et al.), prd_clusters (20) clusters, prd_runs (10) runs, 1001 angles: "
                             "F_8, F_1/8, AUC")
def prd_clusters_runs(fake, real, seed, params):
    return compute_prd_metrics(fake.features, real.features, num_clusters=params["prd_clusters"],
                               num_runs=params["prd_runs"], seed=seed)


@register_metric("prdc", keys=(keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE),
                 description="improved precision/recall, density, coverage (prdc convention), k = prdc_k (5)")
def prdc_k_nearest(fake, real, seed, params):
    shared = _kid_and_prdc(fake, real, seed, params)
    r = shared["prdc"] if shared is not None else compute_prdc(real.features, fake.features,
                                                               nearest_k=params["prdc_k"])
    return {keys.PRECISION: r["precision"], keys.RECALL: r["recall"], keys.DENSITY: r["density"],
            keys.COVERAGE: r["coverage"]}


@register_metric("classes", keys=(keys.CLASS_KL, keys.CLASSES_LOW), needs="logits",
                 description="class coverage: KL of the fakes' argmax-class shares to the real set's, classes below "
                             "half their real share (a classifier's logits: the domain extractor)")
def classes_argmax(fake, real, seed, params):
    if real.logits is None:
        raise ValueError(f"metric 'classes' needs the real set's logits, which extractor {real.extractor} did not give")
    r = compute_class_coverage(fake.logits, real.logits)
    return {keys.CLASS_KL: r["class_kl"], keys.CLASSES_LOW: r["classes_low"],
            "class_shares": (r["fake_shares"], r["real_shares"])}


# ---- issue 36: metrics of any feature space (FD is "fid" above on that space's features) ----------------------
@register_metric("mmd", keys=(keys.MMD,), description="1000 x MMD^2, RBF sigma 10, L2-normalised features, "
                                                         "minimum-variance estimator (CMMD's; CMMD on CLIP features)")
def mmd_rbf_sigma10(fake, real, seed, params):
    from .mmd import compute_mmd
    return {keys.MMD: compute_mmd(fake.features, real.features)}


@register_metric("vendi", keys=(keys.VENDI,), description="Vendi score of the fakes, cosine kernel, q = 1")
def vendi_cosine(fake, real, seed, params):
    from .vendi import compute_vendi
    return {keys.VENDI: compute_vendi(fake.features)}


@register_metric("authpct", keys=(keys.AUTHPCT,), needs="train",
                 description="AuthPct (dgm-eval): % of fakes farther from their nearest training point than it is "
                             "from its own; with each of the first 8 fakes' nearest training image")
def authpct_train(fake, real, seed, params, train):
    from .memorization import compute_authpct, nearest
    dist, idx = nearest(fake.features[:NEAREST_SHOWN], train.features)
    return {keys.AUTHPCT: compute_authpct(train.features, fake.features), "nearest_train": (idx, dist)}


@register_metric("ct", keys=(keys.C_T,), needs="train",
                 description="C_T (Meehan et al. 2020): 3 KMeans cells (seeded), 64 PCA dims, tau = 20/m; test "
                             "set = the real reference")
def ct_three_cells(fake, real, seed, params, train):
    from .memorization import compute_ct
    return {keys.C_T: compute_ct(train.features, real.features, fake.features, seed=seed)}


@register_metric("fld", keys=(keys.FLD, keys.FLD_GAP), needs="train",
                 description="FLD and its train-vs-test NLL gap (marcojira/fld), seeded subsets; test set = the "
                             "real reference")
def fld_seeded(fake, real, seed, params, train):
    from .fld import compute_fld
    fld, gap = compute_fld(train.features, real.features, fake.features, seed=seed)
    return {keys.FLD: fld, keys.FLD_GAP: gap}


NEAREST_SHOWN = 8    # fakes whose nearest training image authpct reports (the page's gallery)
MEMORIZATION = ("authpct", "ct", "fld")
