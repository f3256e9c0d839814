"""Snapshots along training (eval.snapshots), claims along the curve, the plateau rule of the inference stage."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from protocols.api import along_training, snapshot_series
from protocols.claims import Values, beats, trajectory
from protocols.config import resolve, snapshot_steps
from common.store import Measurement, ResultsStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cmd(tmp_path, *args):
    return [sys.executable, "-m", "protocols.run", "--budget", "smoke", "--no-progress", "--no-leaderboard",
            "--results", str(tmp_path / "r.sqlite"), "--runs", str(tmp_path / "runs"), "--protocol", "ablation",
            "--model", "vae", "--seeds", "1", "--set", "eval.n_samples=60", "--set", "eval.snapshots=4",
            "--set", "eval.snapshot_samples=40", "--set", "eval.snapshot_bpd_images=16", *args]


ENV = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}


def _snapshot_rows(store):
    return sorted(((r["snapshot"], r["metric"], r["at_step"], r["images_seen"], r["value"])
                   for r in store.measurements(model="vae") if r["snapshot"] > 0))


def test_the_schedule_is_evenly_spaced_ends_at_the_last_step_and_is_part_of_the_hash():
    assert snapshot_steps(1600, 8) == [200, 400, 600, 800, 1000, 1200, 1400, 1600]
    assert snapshot_steps(3, 8) == [1, 2, 3] and snapshot_steps(100, 0) == []
    hashes = {n: resolve("vae", budget="smoke", overrides={"eval.snapshots": str(n)}).hash() for n in (0, 2, 4)}
    assert len(set(hashes.values())) == 3
    off = resolve("vae", budget="smoke").hashed()["eval"]
    assert not {"snapshots", "snapshot_samples", "snapshot_bpd_images"} & set(off)   # off: the hash of before
    assert resolve("vae", budget="cpu").eval.snapshots == 8


def test_snapshot_rows_survive_kill_9_and_resume_to_the_uninterrupted_rows(tmp_path):
    steps = ["--set", "train.steps=240", "--set", "train.ckpt_every=0"]
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    done = subprocess.run(_cmd(ref_dir, *steps), cwd=ref_dir, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = _snapshot_rows(ResultsStore(ref_dir / "r.sqlite"))
    assert {s for s, *_ in reference} == {1, 2, 3, 4}
    assert sorted({(s, step, img) for s, _, step, img, _ in reference}) == [(1, 60, 480), (2, 120, 960),
                                                                          (3, 180, 1440), (4, 240, 1920)]

    proc = subprocess.Popen(_cmd(tmp_path, *steps), cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    records = list((tmp_path / "runs").glob("digits/ablation/vae/seed0-*/snapshots.json"))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        records = list((tmp_path / "runs").glob("digits/ablation/vae/seed0-*/snapshots.json"))
        if records and len(json.loads(records[0].read_text())) >= 2:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(json.loads(records[0].read_text()))
    assert 2 <= killed_at < 4
    assert _snapshot_rows(ResultsStore(tmp_path / "r.sqlite")) == []        # nothing stored for an unfinished cell

    again = subprocess.run(_cmd(tmp_path, *steps, "--resume"), cwd=tmp_path, env=ENV, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = _snapshot_rows(ResultsStore(tmp_path / "r.sqlite"))
    assert [r[:4] for r in resumed] == [r[:4] for r in reference]        # every snapshot once, at the same step
    for a, b in zip(resumed, reference):
        assert a[4] == pytest.approx(b[4], rel=1e-4, abs=1e-6)


def _store_with_two_schedules(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    rows = []
    for group, value in (("g4", 1.0), ("g2", 100.0)):
        for seed in (0, 1):
            for i in range(1, 3):
                rows.append(Measurement(run_id=f"{group}{seed}", model="vae", protocol="ablation", dataset="digits",
                                        budget="cpu", seed=seed, metric="fid", value=value + seed + i, n_samples=50,
                                        cell_key=f"{group}-{seed}", group_key=group, snapshot=i, at_step=10 * i,
                                        images_seen=640 * i, train_seconds=1.0 * i))
    store.add(rows)
    return store


def test_snapshot_series_never_pool_two_configurations(tmp_path):
    store = _store_with_two_schedules(tmp_path)
    series, seen = snapshot_series(store, {"vae": "g4"})
    assert sorted(series) == [1, 2]
    assert sorted(series[1]["vae"]["fid"]) == [2.0, 3.0] and seen[2] == {"vae": 1280}
    assert store.has_cell("g4-0", ["fid"]) is False              # snapshot rows never complete a cell


def _flipping_series(n=8):
    """gan better than vae on FID up to snapshot 4, worse from 5 on (3 seeds each, no overlap either way)."""
    series, seen = {}, {}
    for i in range(1, n + 1):
        good, bad = [1.0, 1.1, 1.2], [2.0, 2.1, 2.2]
        gan, vae = (good, bad) if i <= n // 2 else (bad, good)
        series[i] = Values({"gan": {"fid": gan}, "vae": {"fid": vae}})
        seen[i] = {"gan": 10_000 * i, "vae": 10_000 * i}
    return series, seen


def test_a_claim_whose_winner_flips_halfway_reports_the_flip():
    series, seen = _flipping_series()
    curve = along_training(beats("gan", "vae", "fid"), series, seen, 8)
    assert [p["status"] for p in curve["points"]] == ["reproduced"] * 4 + ["not reproduced"] * 4
    assert curve["summary"].startswith("reproduced up to 40k images, flips not reproduced at 50k images")
    gap_ci = curve["points"][0]["detail"]["comparisons"][0]["gap_ci95"]
    assert 0 < gap_ci[0] <= gap_ci[1]                       # a seed-level interval, all on the claimed side
    steady = trajectory([{"snapshot": i, "of": 2, "images": 5 * i, "status": "inconclusive", "gap": 1.0 / i}
                         for i in (1, 2)])
    assert steady == "inconclusive at every snapshot (5 images to 10 images); gap shrinking at the end"


def test_a_comparison_without_values_at_snapshots_is_left_out_of_the_curve():
    """The GAN has no BPD before its inference stage: along training a BPD claim on it cannot be evaluated."""
    series = {1: Values({"gan": {"fid": [1.0, 1.1]}, "vae": {"fid": [2.0, 2.1], "bpd": [3.0, 3.1]}})}
    claim = beats("vae", "gan", "bpd")
    assert along_training(claim, series, {1: {"gan": 5, "vae": 5}}, 1) is None
    both = along_training(beats("gan", "vae", "fid"), series, {1: {"gan": 5, "vae": 6}}, 1)
    assert both["points"][0]["images"] is None and "snapshot 1/1" in both["summary"]   # unequal images: by fraction


# ---- the plateau rule of the GAN's inference stage ----------------------------------------------------------
def _gan_trainer(tmp_path, **over):
    import torch
    from models import build_model
    from protocols.datasets import load_dataset
    from protocols.trainer import Trainer
    overrides = {"train.steps": "60", "model.infer_steps": "60", "train.plateau_every": "10", **over}
    cfg = resolve("gan", budget="smoke", overrides=overrides)
    ds = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("gan", cfg.model_cfg, ds.spec)
    return Trainer(model, ds.train_x, cfg, tmp_path, val_x=ds.val_x)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_inference_stage_stops_when_its_bound_stops_improving(tmp_path, threads):
    import torch
    torch.set_num_threads(threads)
    # an improvement must beat 1e6 bits/dim to count: after the first check, none does, so two checks later it stops
    res = _gan_trainer(tmp_path, **{"train.plateau_patience": "2", "train.plateau_tol": "1e6"}).fit()
    st = res.plateau["inference"]
    assert [s for s, _ in st["curve"]] == [10, 20, 30] and st["stopped_at"] == 30 and st["budget"] == 60
    assert res.step == 120                                   # the rest of the stage is skipped, the run is complete
    assert json.loads((tmp_path / "plateau.json").read_text())["inference"]["stopped_at"] == 30


def test_without_patience_the_stage_runs_its_budget_and_its_curve_is_recorded(tmp_path):
    res = _gan_trainer(tmp_path).fit()
    st = res.plateau["inference"]
    assert [s for s, _ in st["curve"]] == [10, 20, 30, 40, 50] and st["stopped_at"] is None
    assert all(v == v and v > 0 for _, v in st["curve"])


def test_a_plateau_stop_survives_resume(tmp_path):
    over = {"train.plateau_patience": "2", "train.plateau_tol": "1e6"}
    first = _gan_trainer(tmp_path, **over).fit(stop_at=75)        # interrupted in the inference stage
    assert first.step == 75 and first.plateau["inference"]["curve"][0][0] == 10
    again = _gan_trainer(tmp_path, **over).fit(resume=True)
    st = again.plateau["inference"]
    assert again.step == 120 and [s for s, _ in st["curve"]] == [10, 20, 30] and st["stopped_at"] == 30


def test_the_page_shows_learning_curves_and_verdicts_along_training_and_tables_only_final_rows(tmp_path):
    from leaderboard.build import build, load_store
    store = _store_with_two_schedules(tmp_path)
    store.add([Measurement(run_id="g40", model="vae", protocol="ablation", dataset="digits", budget="cpu", seed=0,
                           metric="fid", value=7.25, n_samples=50, cell_key="g4-0", group_key="g4",
                           extractor="domain")])
    series, seen = _flipping_series()
    evidence = {"comparisons": [], "along_training": along_training(beats("gan", "vae", "fid"), series, seen, 8)}
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="c", text="gan beats vae",
                    status="inconclusive", evidence=evidence)
    html = build(tmp_path / "r.sqlite", tmp_path / "site").read_text()
    assert "Learning curves" in html and "along training: reproduced up to 40k images, flips" in html
    assert list((tmp_path / "site" / "img").glob("curves-*.png"))
    data = load_store(tmp_path / "r.sqlite")
    assert [m["value"] for m in data["measurements"]] == [7.25]     # tables: the final row only
    assert len(data["snapshots"]) == 8 and "7.25" in html
