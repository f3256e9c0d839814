"""Data-parallel training through torch.distributed (Gloo on CPU): ranks stay in sync."""
import os
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(rank, world, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import torch.distributed as dist
    from models.base import DataSpec
    from protocols import distributed as D
    from protocols.config import RunConfig, TrainConfig
    from protocols.trainer import Trainer
    from toy_models import ToyAdversarial, ToyConfig

    # Rendezvous through a file rather than a TCP port: a free port picked up front can be taken by
    # another process before the ranks bind it, which made this test flaky on busy machines.
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out_dir, "rendezvous"), rank=rank,
                            world_size=world)
    assert D.init_from_env("cpu") == torch.device("cpu")  # joins nothing twice: the group already exists
    torch.manual_seed(100 + rank)  # different inits on purpose: the trainer must broadcast rank 0's
    spec = DataSpec(1, 4, 17)
    x = torch.randint(0, 17, (64, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    cfg = RunConfig(model="toy", seed=1, model_cfg=ToyConfig(),
                    train=TrainConfig(steps=5, batch_size=8, progress=False, ckpt_every=0, sample_every=0))
    tr = Trainer(ToyAdversarial(cfg.model_cfg, spec), x, cfg, out_dir)
    tr.fit()
    flat = torch.cat([p.detach().flatten() for p in tr.model.parameters()])
    torch.save(flat, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_ranks_train_in_lockstep(tmp_path):
    mp.start_processes(_worker, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # averaged gradients keep every rank identical
    assert (tmp_path / "last.pt").exists()  # written by rank 0 only, once


@pytest.mark.slow
def test_torchrun_cli_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    # --standalone: torchrun's own rendezvous on a port it picks and holds (no port race with other processes)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "protocols.run", "--protocol", "ablation", "--model", "vae", "--budget", "smoke", "--seeds", "1",
           "--results", str(tmp_path / "r.sqlite"), "--runs", str(tmp_path / "runs"), "--site", str(tmp_path / "site"),
           "--no-progress"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    from common.store import ResultsStore
    rows = ResultsStore(tmp_path / "r.sqlite").measurements(model="vae")
    assert {"bpd", "fid"} <= {x["metric"] for x in rows}
    assert len([x for x in rows if x["metric"] == "bpd"]) == 1  # rank 0 wrote once
