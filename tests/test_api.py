"""The Python API does what the CLI does, without the CLI: run a protocol, get the table and claims, build the page;
and the claims and the table of a run use that run's configurations only."""
import torch

from leaderboard.build import build
from protocols.api import run_protocol
from common.store import ResultsStore

SMALL = {"eval.n_samples": "60"}


def test_run_protocol_then_build_the_page(tmp_path):
    threads = torch.get_num_threads()
    res = run_protocol("ablation", models=["vae"], budget="smoke", seeds=2, results=tmp_path / "r.sqlite",
                       out=tmp_path / "runs", overrides=SMALL, progress=False)
    assert torch.get_num_threads() == threads                    # the caller's thread count is restored
    assert [(c.model, c.status) for c in res.cells] == [("vae", "done")] * 2 + [("real", "done")] * 2
    assert res.table["real"]["fid"]["n"] == 2 and "bpd" not in res.table["real"]      # the real-data floor row
    assert res.table["vae"]["bpd"]["n"] == 2 and res.configs["vae"] == ResultsStore(
        tmp_path / "r.sqlite").measurements(model="vae")[0]["config_hash"]
    assert len(res.claims) == 6 and all(c["configs"]["vae"] == res.configs["vae"] for c in res.claims)
    page = build(res.store_path, tmp_path / "site")
    assert page.exists() and "vae" in page.read_text()


def test_claims_and_table_never_pool_configurations(tmp_path):
    kw = dict(models=["vae"], budget="smoke", results=tmp_path / "r.sqlite", out=tmp_path / "runs", progress=False)
    first = run_protocol("ablation", seeds=1, overrides=SMALL, **kw)
    other = run_protocol("ablation", seeds=1, seed=1, overrides={**SMALL, "train.steps": "2"}, **kw)
    assert first.configs["vae"] != other.configs["vae"]
    assert other.table["vae"]["bpd"]["n"] == 1                   # not two seeds of different configurations
    claim = next(c for c in other.claims if c["id"] == "gan-vs-vae")
    bpd = next(comp for comp in claim["evidence"]["comparisons"] if comp["metric"] == "bpd")
    assert bpd["better"] == "vae" and bpd["better_values"] == [other.table["vae"]["bpd"]["mean"]]


def test_hybrid_vs_diffusion_records_cost_and_the_steps_curve(tmp_path):
    res = run_protocol("hybrid_vs_diffusion", models=["vdm"], budget="smoke", seeds=1, results=tmp_path / "r.sqlite",
                       out=tmp_path / "runs", overrides={**SMALL, "vdm.sample_steps": "12"}, progress=False)
    vdm = res.table["vdm"]
    assert vdm["nfe"]["mean"] == 12 and vdm["samples_per_s"]["mean"] > 0 and vdm["speed_vs_gan"]["mean"] > 0
    assert "fid@10steps" in vdm and "fid@25steps" not in vdm       # curve points below the model's own steps
    cost = next(c for c in res.claims if c["id"] == "avade-samples-10x-faster-than-vdm")
    assert cost["status"] == "inconclusive" and "source" in cost["evidence"]   # no AV-ADE in this run


def test_an_override_that_fits_only_the_run_s_models_does_not_fail_the_claims(tmp_path):
    """``--set train.phase_lr=disc=..`` with ``--model gan``: the VAE of the claims has no ``disc`` phase, so it
    has no comparable configuration; the run finishes (claims without the VAE's evidence), it does not fail after
    its cells trained."""
    from protocols.api import claim_configs
    from protocols.base import PROTOCOLS
    over = {**SMALL, "train.phase_lr": "disc=1e-3"}
    res = run_protocol("ablation", models=["gan"], budget="smoke", seeds=1, results=tmp_path / "r.sqlite",
                       out=tmp_path / "runs", overrides=over, progress=False)
    assert [(c.model, c.status) for c in res.cells] == [("gan", "done"), ("real", "done")]
    assert len(res.claims) == 6 and "vae" not in res.claims[0]["configs"]
    gan_vs_vae = next(c for c in res.claims if c["id"] == "gan-vs-vae")
    assert gan_vs_vae["status"] == "inconclusive"
    models = {c.model for c in claim_configs(PROTOCOLS.get("ablation"), {"gan"}, 0, dataset="digits",
                                             budget="smoke", overrides=over)}
    assert "gan" in models and "avade" in models and not models & {"vae", "vade"}
