"""Class coverage (metrics/classes.py): which classes a model's samples fall in under the domain classifier,
checked against a direct count, and stored at every snapshot of every model on a labelled dataset (issue 33)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from metrics import keys as K
from metrics.api import compute_metrics
from metrics.classes import class_shares, compute_class_coverage
from metrics.features import Features


def _logits(labels, n_classes=10, seed=0):
    """Logits whose argmax is ``labels`` (random margins, so nothing depends on ties)."""
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(len(labels), n_classes))
    out[np.arange(len(labels)), labels] += 10.0
    return out


def _known_case():
    real = np.repeat(np.arange(10), 100)                             # 10 classes, 10% each
    fake = np.concatenate([np.repeat([c for c in range(10) if c not in (3, 5)], 50),   # 8 classes at 10%
                           np.repeat(5, 100)])                      # class 5 doubled (20%), class 3 missing
    return _logits(fake, seed=1), _logits(real, seed=2)


def test_shares_kl_and_low_classes_equal_a_direct_count():
    fake, real = _known_case()
    r = compute_class_coverage(fake, real)
    expect = np.full(10, 0.1)
    expect[3], expect[5] = 0.0, 0.2
    np.testing.assert_allclose(r["fake_shares"], expect)
    np.testing.assert_allclose(r["real_shares"], np.full(10, 0.1))
    assert r["class_kl"] == pytest.approx(0.2 * math.log(2.0), rel=1e-12)   # only class 5 contributes
    assert r["classes_low"] == 1                                            # class 3 (0 < 0.05)


def test_balanced_samples_score_zero_and_dropping_m_classes_scores_log_k_over_k_minus_m():
    real = _logits(np.repeat(np.arange(10), 30))
    assert compute_class_coverage(real, real)["class_kl"] == 0.0
    kept = np.repeat(np.arange(6), 50)                                      # 4 of 10 dropped, mass spread evenly
    r = compute_class_coverage(_logits(kept), real)
    assert r["class_kl"] == pytest.approx(math.log(10 / 6), rel=1e-12) and r["classes_low"] == 4


def test_a_class_the_real_set_lacks_counts_at_one_over_n_real():
    real = _logits(np.repeat(np.arange(9), 10))                              # class 9 never predicted on real data
    fake = _logits(np.array([9] * 10 + list(range(9)) * 10))
    r = compute_class_coverage(fake, real)
    f = 0.1
    expect = 9 * f * math.log(f / (1 / 9)) + f * math.log(f / (1 / 90))
    assert r["class_kl"] == pytest.approx(expect, rel=1e-12) and r["classes_low"] == 0


def test_bad_logits_are_one_line_errors():
    with pytest.raises(ValueError, match="N x 10 logits"):
        class_shares(np.zeros((4, 3)), 10)
    with pytest.raises(ValueError, match="N >= 1"):
        class_shares(np.zeros((0, 10)), 10)


def test_the_registered_metric_returns_the_counts_and_the_shares():
    fake, real = _known_case()
    feats = lambda lg: Features(np.asarray(lg[:, :4], dtype=np.float64), lg, "domain-test")  # noqa: E731
    res = compute_metrics(feats(fake), feats(real), ["classes"])
    assert res.values[K.CLASS_KL] == pytest.approx(0.2 * math.log(2.0)) and res.values[K.CLASSES_LOW] == 1
    shares, real_shares = res.curves["classes"]
    assert shares[3] == 0 and shares[5] == pytest.approx(0.2) and real_shares.sum() == pytest.approx(1.0)
    assert K.direction(K.CLASS_KL) == K.direction(K.CLASSES_LOW) == "lower"


def test_every_snapshot_of_every_model_stores_class_coverage_recall_and_kl(tmp_path):
    from protocols.api import run_protocol
    res = run_protocol("ablation", models=["gan", "avade"], budget="smoke", seeds=1, results=tmp_path / "r.sqlite",
                       out=tmp_path / "runs", progress=False,
                       overrides={"eval.snapshots": "2", "eval.snapshot_samples": "80", "train.threads": "1"})
    rows = [r for r in _store(res).measurements() if r["snapshot"] > 0]
    for model in ("gan", "avade", "real"):
        for snap in (1, 2):
            got = {r["metric"]: r for r in rows if r["model"] == model and r["snapshot"] == snap}
            assert {K.CLASS_KL, K.CLASSES_LOW, K.RECALL, K.FID} <= set(got), (model, snap)
            extra = got[K.CLASS_KL]["extra"]
            assert len(extra["shares"]) == len(extra["class_names"]) == 10
            assert sum(extra["shares"]) == pytest.approx(1.0, abs=1e-4)
    kl = {(r["model"], r["snapshot"]) for r in rows if r["metric"] == K.KL_PER_IMAGE}
    assert {("avade", 1), ("avade", 2)} <= kl
    assert not {k for k in kl if k[0] == "gan"}          # no inference network during the adversarial stage

    # the page: class KL along training, the class shares figure, and each model's samples grouped by label
    from leaderboard.build import build
    page = build(res.store_path, tmp_path / "site").read_text()
    assert "class shares along training" in page and "class KL" in page
    assert page.count("samples by the classifier&#39;s label") + page.count("samples by the classifier's label") == 2
    run_dir = next((tmp_path / "runs").glob("digits/ablation/avade/seed0-*"))
    rows_json = json.loads((run_dir / "samples_by_class.json").read_text())
    assert sum(rows_json["counts"]) == rows_json["n"] and len(rows_json["class_names"]) == 10


def _store(res):
    from common.store import ResultsStore
    return ResultsStore(res.store_path)
