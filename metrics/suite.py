"""The registered metrics: each names its variant and calls a generic ``compute_*`` (STYLE habit 2).

Sample counts are the caller's (budgets fix them); every function takes the fake and real
:class:`~metrics.features.Features` of one extractor and the evaluation seed.
"""
from __future__ import annotations

from . import keys
from .fid import compute_fid
from .inception_score import compute_inception_score, probabilities_from_logits
from .kid import compute_kid
from .prd import compute_prd_metrics
from .prdc import compute_prdc
from .registry import register_metric


@register_metric("fid", keys=(keys.FID,), description="Frechet distance (Eq. 15), all fake vs all real features")
def fid_all(fake, real, seed):
    return {keys.FID: compute_fid(fake.features, real.features)}


@register_metric("kid", keys=(keys.KID,), description="KID, cubic kernel, 100 seeded subsets of <= 1000")
def kid_100_subsets(fake, real, seed):
    return {keys.KID: compute_kid(fake.features, real.features, num_subsets=100, max_subset_size=1000, seed=seed)}


@register_metric("is", keys=(keys.IS, keys.IS_STD), needs="logits", description="IS (Eq. 14) of the fakes, 10 splits")
def is_10_splits(fake, real, seed):
    mean, std = compute_inception_score(probabilities_from_logits(fake.logits), splits=10, shuffle_seed=seed)
    return {keys.IS: mean, keys.IS_STD: std}


@register_metric("prd", keys=(keys.PRD_F8, keys.PRD_F1_8, keys.PRD_AUC),
                 description="PRD (Sajjadi et al.), 20 clusters, 10 runs, 1001 angles: F_8, F_1/8, AUC")
def prd_20_clusters_10_runs(fake, real, seed):
    return compute_prd_metrics(fake.features, real.features, num_clusters=20, num_runs=10, seed=seed)


@register_metric("prdc", keys=(keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE),
                 description="improved precision/recall, density, coverage (prdc convention), k = 5")
def prdc_k5(fake, real, seed):
    r = compute_prdc(real.features, fake.features, nearest_k=5)
    return {keys.PRECISION: r["precision"], keys.RECALL: r["recall"], keys.DENSITY: r["density"],
            keys.COVERAGE: r["coverage"]}
