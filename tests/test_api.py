"""The Python API does what the CLI does, without the CLI: run a protocol, get the table and claims, build the page;
and the claims and the table of a run use that run's configurations only."""
import torch

from leaderboard.build import build
from protocols.api import run_protocol
from protocols.store import ResultsStore

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
    assert len(res.claims) == 5 and all(c["configs"]["vae"] == res.configs["vae"] for c in res.claims)
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
