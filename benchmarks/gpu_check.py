"""GPU readiness in one script: what a user with one CUDA GPU needs to trust before a 200k-step paper run.

    bash benchmarks/gpu_check.sh            # on a CUDA machine (this file does the work)
    bash benchmarks/gpu_check.sh --cpu      # the same steps on the CPU, tiny sizes (to check the script itself)

Steps, each printed as one JSON line (and all of them written to ``--out``, default gpu_check.json):

1. ``miniature``: the Table 1 ablation at ``--budget paper`` on CIFAR-format files with a random-weight Inception
   file, every stage bounded to 3 steps, ``train.device=cuda`` (the paper path of tests/test_paper_miniature.py).
2. ``step_time``: seconds per training step (every phase) of each Table 1 model at the paper preset, 3x32x32,
   batch 64, in fp32 and under ``torch.autocast`` (bfloat16), after warm-up, synchronised.
3. ``inception``: Inception-v3 feature throughput (images/s at 299x299, batch 200) and the time of FID-50k end to
   end: 50k generated-size images -> features -> statistics -> Frechet distance against 50k reference features.
4. ``torchrun``: a 1-process ``torchrun`` of a smoke-budget cell with NCCL (gloo with --cpu).
5. ``ray_grid``: a 2-cell grid (VAE, seeds 0-1, plus their real-data floor cells) through ``--executor ray``, half a
   GPU per cell so both share the one GPU (``pip install -e ".[ray]"``; reported as skipped without it).
6. ``pretrained``: the GPU paths of issue 36, DINOv2 ViT-L/14 (FD_DINOv2's network) and CLIP ViT-L/14@336 (CMMD's)
   from random-weight files in the published formats: images/s at batch 100, and the largest difference between
   their GPU and CPU features on 4 images (--cpu: ViT-S/14 and OpenAI's ViT-B/32 layout, to check the script).

Nothing is downloaded; the Inception weights are random (throughput does not depend on them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
TABLE1 = ("gan", "vae", "vade", "avgde", "avade")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def fixtures(d: Path) -> dict:
    """CIFAR-format files and a random-weight Inception file in pytorch-fid's format (the tests' writers)."""
    from test_datasets import write_cifar
    from test_metrics_inception import _pytorch_fid_reference
    write_cifar(d / "data" / "cifar-10-batches-py", per_batch=40, n_test=64)
    torch.manual_seed(0)
    weights = d / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(_pytorch_fid_reference().state_dict(), weights)
    return {"data": d / "data", "weights": weights}


def miniature(d: Path, files: dict, device: str) -> dict:
    cmd = [sys.executable, "-m", "protocols.run", "--protocol", "ablation", "--budget", "paper", "--dataset",
           "cifar10", "--data-root", str(files["data"]), "--inception-weights", str(files["weights"]), "--seeds", "1",
           "--no-progress", "--results", str(d / "r.sqlite"), "--runs", str(d / "runs"), "--site", str(d / "site"),
           "--set", "train.steps=3", "--set", "train.batch_size=16", "--set", "eval.n_samples=64",
           "--set", "eval.iw_k=2", "--set", "eval.bpd_images=16", "--set", f"train.device={device}"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return {"step": "miniature", "ok": r.returncode == 0, "seconds": round(time.perf_counter() - t0, 1),
            "stderr_tail": r.stderr[-800:] if r.returncode else ""}


def step_time(device: torch.device, batch: int, repeats: int, autocast: bool) -> dict:
    from models import Batch, DataSpec, build_model
    from protocols.config import resolve
    from protocols.trainer import make_optimizer
    spec = DataSpec(3, 32, 256, 10)
    out = {}
    for name in TABLE1:
        cfg = resolve(name, budget="paper", dataset="cifar10", machine=False)
        torch.manual_seed(0)
        model = build_model(name, cfg.model_cfg, spec).to(device).train()
        x = Batch(torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=device))
        phases = model.stages(1)[0].phases
        opts = {ph: make_optimizer("adamax", model.phase_parameters(ph), cfg.train, ph) for ph in phases}

        def one_step():
            for ph in phases:
                model.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = model.losses(ph, x)["loss"]
                loss.backward()
                opts[ph].step()
        one_step()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            one_step()
        _sync(device)
        out[name] = round((time.perf_counter() - t0) / repeats, 4)
    return {"step": "step_time", "autocast": autocast, "batch": batch, "seconds_per_step": out}


def inception(device: torch.device, files: dict, n_fid: int, batch: int) -> dict:
    from metrics.features.inception import InceptionExtractor
    from metrics.fid import compute_fid
    ext = InceptionExtractor(files["weights"], device=device)
    x = torch.rand(batch, 3, 32, 32)
    ext.embed(x)
    _sync(device)
    t0 = time.perf_counter()
    feats, done = [], 0
    while done < n_fid:
        feats.append(ext.embed(torch.rand(min(batch, n_fid - done), 3, 32, 32))[0].numpy())
        done += len(feats[-1])
    _sync(device)
    t_feat = time.perf_counter() - t0
    import numpy as np
    fake = np.concatenate(feats)
    ref = fake[np.random.RandomState(0).permutation(len(fake))] + 0.01
    t1 = time.perf_counter()
    fid = compute_fid(fake, ref)
    t_fid = time.perf_counter() - t1
    return {"step": "inception", "images": n_fid, "images_per_s": round(n_fid / t_feat, 1),
            "fid_seconds_total": round(t_feat + t_fid, 1), "frechet_seconds": round(t_fid, 2), "fid": round(fid, 4)}


def torchrun(d: Path, device: str) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "-m", "protocols.run",
           "--protocol", "ablation", "--model", "vae", "--budget", "smoke", "--seeds", "1", "--no-progress",
           "--no-leaderboard", "--results", str(d / "tr.sqlite"), "--runs", str(d / "truns"),
           "--set", f"train.device={device}", "--set", "eval.n_samples=60"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    backend = "nccl" if device.startswith("cuda") else "gloo"
    return {"step": "torchrun", "backend": backend, "ok": r.returncode == 0,
            "seconds": round(time.perf_counter() - t0, 1), "stderr_tail": r.stderr[-800:] if r.returncode else ""}


def ray_grid(d: Path, device: str) -> dict:
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"step": "ray_grid", "skipped": 'ray is not installed: pip install -e ".[ray]"'}
    cmd = [sys.executable, "-m", "protocols.run", "--protocol", "ablation", "--model", "vae", "--budget", "smoke",
           "--seeds", "2", "--no-progress", "--no-leaderboard", "--results", str(d / "ray.sqlite"), "--runs",
           str(d / "rayruns"), "--set", f"train.device={device}", "--set", "eval.n_samples=60", "--executor", "ray",
           "--gpus-per-cell", "0.5" if device.startswith("cuda") else "0"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return {"step": "ray_grid", "ok": r.returncode == 0 and r.stdout.count(": done, stored") == 4,
            "seconds": round(time.perf_counter() - t0, 1), "stderr_tail": r.stderr[-800:] if r.returncode else ""}


def pretrained(d: Path, device: torch.device, n: int, batch: int, small: bool) -> dict:
    import open_clip
    import timm

    from metrics.features.clip import CLIPExtractor
    from metrics.features.dinov2 import DINOv2Extractor
    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch14_dinov2" if small else "vit_large_patch14_dinov2", num_classes=0)
    width = vit.embed_dim
    torch.save({**vit.state_dict(), "mask_token": torch.zeros(1, width)}, d / "dinov2_random.pth")
    torch.save(open_clip.create_model("ViT-B-32" if small else "ViT-L-14-336", pretrained=None).state_dict(),
               d / "clip_random.pt")
    del vit
    out = {"step": "pretrained", "ok": True}
    for name, cls, path in (("dinov2", DINOv2Extractor, "dinov2_random.pth"),
                            ("clip", CLIPExtractor, "clip_random.pt")):
        ext, cpu = cls(d / path, device=device), cls(d / path, device="cpu")
        x = torch.rand(4, 3, 32, 32)
        diff = float((ext.embed(x)[0] - cpu.embed(x)[0]).abs().max())
        _sync(device)
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            ext.embed(torch.rand(min(batch, n - s), 3, 32, 32))
        _sync(device)
        out[f"{name}_arch"] = ext.arch
        out[f"{name}_images_per_s"] = round(n / (time.perf_counter() - t0), 1)
        out[f"{name}_max_abs_diff_vs_cpu"] = diff
        out["ok"] = out["ok"] and diff < 1e-2
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="run every step on the CPU with tiny sizes")
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = ap.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device here: run on a GPU machine, or pass --cpu to check the script", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    results = [{"step": "device", "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                "torch": torch.__version__}]
    print(json.dumps(results[0]), flush=True)
    with tempfile.TemporaryDirectory(prefix="avade-gpu-check-") as tmp:
        d = Path(tmp)
        files = fixtures(d)
        steps = [lambda: miniature(d, files, device.type),
                 lambda: step_time(device, 8 if args.cpu else 64, 1 if args.cpu else 20, False),
                 lambda: step_time(device, 8 if args.cpu else 64, 1 if args.cpu else 20, True),
                 lambda: inception(device, files, 400 if args.cpu else 50000, 50 if args.cpu else 200),
                 lambda: torchrun(d, device.type),
                 lambda: ray_grid(d, device.type),
                 lambda: pretrained(d, device, 16 if args.cpu else 2000, 8 if args.cpu else 100, args.cpu)]
        for step in steps:
            try:
                res = step()
            except Exception as e:  # noqa: BLE001  one failed step must not hide the others
                res = {"step": getattr(step, "__name__", "?"), "ok": False, "error": f"{type(e).__name__}: {e}"}
            results.append(res)
            print(json.dumps(res), flush=True)
    args.out.write_text(json.dumps(results, indent=2))
    ok = all(r.get("ok", True) for r in results)
    print(f"gpu check {'passed' if ok else 'FAILED'}; results in {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
