"""The whole slice: CLI -> trainer -> evaluator -> store -> leaderboard, at the smoke budget on digits."""
import os
import subprocess
import sys

from common.store import ResultsStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "protocols.run", "--budget", "smoke", "--no-progress", "--results",
           str(tmp_path / "r.sqlite"), "--runs", str(tmp_path / "runs"), "--site", str(tmp_path / "site"), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_protocol_run_stores_results_skips_done_cells_and_builds_the_page(tmp_path):
    r = _run(tmp_path, "--protocol", "ablation", "--model", "vae", "--model", "gan", "--seeds", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    store = ResultsStore(tmp_path / "r.sqlite")
    rows = store.measurements()
    assert {(x["model"], x["metric"]) for x in rows} >= {("vae", "bpd"), ("vae", "fid"), ("gan", "bpd"),
                                                         ("gan", "is"), ("gan", "prd_f8"), ("gan", "coverage")}
    assert all(x["config_hash"] and x["code_version"] for x in rows)
    assert {x["extractor"] for x in rows if x["metric"] == "fid"} == {"domain"}
    assert len(store.claims()) == 6 and all(r["status"] == "done" for r in store.runs())
    page = tmp_path / "site" / "index.html"
    assert page.exists() and f"leaderboard: {page.resolve()}" in r.stdout
    run_dirs = [x["run_dir"] for x in store.runs() if x["model"] != "real"]
    assert [x["status"] for x in store.runs() if x["model"] == "real"] == ["done"]    # the real-data floor
    for d in run_dirs:
        for name in ("samples.png", "config.json", "last.pt", "stats.jsonl", "metrics.json"):
            assert os.path.exists(os.path.join(d, name)), (d, name)
    assert any(os.path.exists(os.path.join(d, "reconstructions.png")) for d in run_dirs)

    again = _run(tmp_path, "--protocol", "ablation", "--model", "vae", "--seeds", "1")
    assert again.returncode == 0 and "already in the store, skipped" in again.stdout
    assert len(ResultsStore(tmp_path / "r.sqlite").measurements()) == len(rows)

    # a changed --set is another configuration: trained, stored beside the first, never pooled with it
    changed = _run(tmp_path, "--protocol", "ablation", "--model", "vae", "--seeds", "1", "--set", "train.steps=3")
    assert changed.returncode == 0 and "already in the store" not in changed.stdout, changed.stdout
    vae = ResultsStore(tmp_path / "r.sqlite").measurements(model="vae", metric="bpd")
    assert len(vae) == 2 and len({r["config_hash"] for r in vae}) == 2 and len({r["group_key"] for r in vae}) == 2
    assert all(r["cell_key"] and r["extractor_id"] == "" for r in vae)
    fid = ResultsStore(tmp_path / "r.sqlite").measurements(model="vae", metric="fid")
    assert all(r["extractor_id"] for r in fid)
    line = next(l for l in changed.stdout.splitlines() if l.startswith("vae"))
    assert line.split()[2] == "1"          # one seed of this configuration, not two pooled


def test_fresh_retrains_and_the_newest_value_counts(tmp_path):
    first = _run(tmp_path, "--protocol", "ablation", "--model", "vae", "--seeds", "1", "--set", "eval.n_samples=60")
    assert first.returncode == 0, first.stderr[-2000:]
    again = _run(tmp_path, "--protocol", "ablation", "--model", "vae", "--seeds", "1", "--set", "eval.n_samples=60",
                 "--fresh")
    assert again.returncode == 0 and "training and evaluating" in again.stdout
    store = ResultsStore(tmp_path / "r.sqlite")
    rows = store.measurements(model="vae")
    assert len([r for r in rows if r["metric"] == "bpd"]) == 1        # replaced, not a second set beside the first
    assert len({(r["metric"], r["snapshot"]) for r in rows}) == len(rows)
    assert [r["status"] for r in store.runs() if r["model"] == "vae"] == ["done"]


def test_two_concurrent_runs_of_one_cell_store_it_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "protocols.run", "--budget", "smoke", "--no-progress", "--results",
           str(tmp_path / "r.sqlite"), "--runs", str(tmp_path / "runs"), "--site", str(tmp_path / "site"),
           "--protocol", "ablation", "--model", "vae", "--seeds", "1", "--set", "eval.n_samples=60"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    store = ResultsStore(tmp_path / "r.sqlite")
    bpd = store.measurements(metric="bpd")
    assert len(bpd) == 1, [o[0] for o in outs]
    assert sum("vae seed 0: training and evaluating" in o[0] for o in outs) == 1
    assert store.query("SELECT COUNT(*) AS n FROM cell_claims")[0]["n"] == 0


def test_gan_train_test_prints_beside_the_baseline(tmp_path):
    r = _run(tmp_path, "--model", "avade", "--protocol", "gan_train_test")
    assert r.returncode == 0, r.stderr[-2000:]
    head = r.stdout.splitlines()[0] if "gan_test" in r.stdout.splitlines()[0] else \
        next(line for line in r.stdout.splitlines() if "gan_test" in line)
    assert "gan_train" in head and "real_to_real" in head
    assert "avade-cond" in r.stdout
    metrics = {x["metric"] for x in ResultsStore(tmp_path / "r.sqlite").measurements(model="avade-cond")}
    assert metrics == {"gan_train", "gan_test", "real_to_real"}


def test_a_cell_does_not_depend_on_what_ran_before(tmp_path):
    """Model init is seeded per cell, so the RNG state left by earlier cells changes nothing."""
    import torch
    from protocols.base import Context
    from protocols.config import resolve
    from protocols.datasets import load_dataset
    from protocols.pipeline import train

    ds = load_dataset("digits")
    weights = []
    for i, junk in enumerate((0, 12345)):
        ctx = Context(dataset=ds, budget="smoke", store=ResultsStore(tmp_path / "r.sqlite"),
                      out_dir=tmp_path / f"runs{i}", device=torch.device("cpu"), progress=False)
        cfg = resolve("avade", budget="smoke", protocol="ablation", overrides={"train.threads": "1"})
        torch.manual_seed(junk)
        torch.rand(junk + 1)
        model, _, _ = train(ctx, cfg, tmp_path / f"runs{i}" / "cell")
        weights.append(torch.cat([t.detach().flatten().float() for t in model.state_dict().values()]))
    torch.testing.assert_close(*weights, rtol=1e-6, atol=1e-7)   # leaked RNG state would be an O(1) change
