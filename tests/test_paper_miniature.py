"""The paper path end to end, in miniature: the whole Table 1 ablation at ``--budget paper`` (the paper's widths,
optimiser and Inception features) on CIFAR-10 files in torchvision's on-disk format, with a random-weight Inception
file in pytorch-fid's state-dict format, through the CLI in one call, every stage bounded to a few steps.

It proves the GPU user's path runs (data loader, Inception loader, paper presets, the GAN's inference stage bounded
by train.steps, importance-weighted BPD, the page); the numbers themselves mean nothing (random Inception, 3 steps).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.paper       # minutes on a CPU: CI runs it in a second pytest call (.ci/run)


@pytest.fixture(scope="module")
def paper_files(tmp_path_factory):
    from test_datasets import write_cifar
    from test_metrics_inception import _pytorch_fid_reference
    d = tmp_path_factory.mktemp("paper")
    write_cifar(d / "data" / "cifar-10-batches-py", per_batch=20, n_test=24)
    torch.manual_seed(0)
    torch.save(_pytorch_fid_reference().state_dict(), d / "pt_inception-2015-12-05-6726825d.pth")
    return d


def test_ablation_at_the_paper_budget_on_cifar_format_files(paper_files):
    d = paper_files
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("AVADE_INCEPTION", None)
    cmd = [sys.executable, "-m", "protocols.run", "--protocol", "ablation", "--budget", "paper", "--dataset", "cifar10",
           "--data-root", str(d / "data"), "--inception-weights", str(d / "pt_inception-2015-12-05-6726825d.pth"),
           "--seeds", "1", "--no-progress", "--results", str(d / "r.sqlite"), "--runs", str(d / "runs"),
           "--site", str(d / "site"), "--set", "train.steps=3", "--set", "train.batch_size=8",
           "--set", "eval.n_samples=24", "--set", "eval.batch_size=24", "--set", "eval.iw_k=2",
           "--set", "eval.bpd_images=8"]
    r = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    store = ResultsStore(d / "r.sqlite")
    rows = store.measurements()
    models = {x["model"] for x in rows}
    assert models == {"gan", "vae", "vade", "avgde", "avade", "real"}
    assert {x["extractor"] for x in rows if x["metric"] == "fid"} == {"inception"}
    assert all(x["extractor_id"] for x in rows if x["metric"] == "fid")
    assert {x["model"] for x in rows if x["metric"] == "bpd_iw"} == {"gan", "vae", "vade", "avgde", "avade"}
    cfg = next(x for x in store.runs() if x["model"] == "gan")["config"]
    assert cfg["model_cfg"]["width"] == 64 and cfg["train"]["steps"] == 3          # paper widths, bounded
    stats = Path(next(x for x in store.runs() if x["model"] == "gan")["run_dir"]) / "stats.jsonl"
    assert '"stage": "inference"' in stats.read_text()           # the inference stage ran, bounded to 3 steps
    assert all(x["status"] == "done" for x in store.runs())
    assert (d / "site" / "index.html").exists()
