"""Metric parameters from the caller (prd_clusters, prd_runs, prdc_k): API, registry and CLI."""
import contextlib
import io

import numpy as np
import prdc
import pytest

import metrics.cli as cli
from metrics import DEFAULT_PARAMS, keys
from metrics.api import Evaluation, compute_metrics
from metrics.features import Features
from metrics.prd import compute_prd_metrics


def _features(seed, n=60, d=4, shift=0):
    """Integer-valued features (scikit-learn's distances are exact on them: prdc is compared exactly)."""
    rng = np.random.RandomState(seed)
    return Features(rng.randint(0, 9, (n, d)).astype(np.float64) + shift, rng.randn(n, 5), "x")


def test_defaults_are_the_registered_variants():
    assert DEFAULT_PARAMS == {"prd_clusters": 20, "prd_runs": 10, "prdc_k": 5}
    fake, real = _features(0), _features(1)
    assert compute_metrics(fake, real, ["prdc"]).values == compute_metrics(
        fake, real, ["prdc"], params={"prdc_k": 5}).values


def test_prdc_k_reaches_prdc_and_equals_the_package():
    fake, real = _features(0), _features(1, shift=1)
    default = compute_metrics(fake, real, ["prdc"]).values
    res = compute_metrics(fake, real, ["prdc"], params={"prdc_k": 3})
    with contextlib.redirect_stdout(io.StringIO()):
        ref = prdc.compute_prdc(real.features, fake.features, 3)
    assert res.values == {keys.PRECISION: ref["precision"], keys.RECALL: ref["recall"],
                          keys.DENSITY: ref["density"], keys.COVERAGE: ref["coverage"]}
    assert res.values != default
    assert res.meta["params"] == {"prd_clusters": 20, "prd_runs": 10, "prdc_k": 3}


def test_prd_params_reach_prd():
    fake, real = _features(2, n=80), _features(3, n=80, shift=1)
    res = compute_metrics(fake, real, ["prd"], seed=4, params={"prd_clusters": 5, "prd_runs": 2})
    ref = compute_prd_metrics(fake.features, real.features, num_clusters=5, num_runs=2, seed=4)
    # the same seeded computation twice: up to run-to-run BLAS round-off in k-means
    assert res.values == pytest.approx({k: ref[k] for k in res.values}, rel=1e-9)
    assert res.meta["params"]["prd_clusters"] == 5 and res.meta["params"]["prd_runs"] == 2


@pytest.mark.parametrize("params,match", [({"prdc_n": 3}, "valid parameters: prd_clusters, prd_runs, prdc_k"),
                                          ({"prdc_k": 0}, "prdc_k must be an integer >= 1"),
                                          ({"prd_runs": 2.5}, "prd_runs must be an integer >= 1"),
                                          ({"prd_clusters": True}, "prd_clusters must be an integer"),
                                          ({"prdc_k": 60}, "prdc_k=60 needs more than 60 points")])
def test_bad_params_are_one_line_errors(params, match):
    with pytest.raises(ValueError, match=match) as err:
        compute_metrics(_features(0), _features(1), ["fid", "prdc"], params=params)
    assert "\n" not in str(err.value)


def test_cli_flags_become_params(monkeypatch, capsys):
    seen = {}

    def fake_evaluate(*args, **kwargs):
        seen.update(kwargs["params"])
        return Evaluation({keys.FID: 1.0}, meta={"params": kwargs["params"]})
    monkeypatch.setattr(cli, "evaluate_detailed", fake_evaluate)
    assert cli.main(["--fake", "f", "--real", "r", "--prdc-k", "3", "--prd-runs", "4", "--json"]) == 0
    assert seen == {"prdc_k": 3, "prd_runs": 4}                     # prd_clusters left to its default
    assert '"prdc_k": 3' in capsys.readouterr().out
