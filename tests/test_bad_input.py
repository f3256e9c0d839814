"""Bad input, as a table: every command line of the suite given something wrong answers with the expected exit
code and one clear line, never a traceback, and never loses or changes a stored row.

186 bad inputs are tried here: the 176 rows of ``CASES`` (every flag of ``protocols.run`` -- the executor options
included --, of ``python -m metrics`` and of ``leaderboard.build`` with an out-of-range value, an unknown name or a
missing input) and 10 that need more than a row (foreign, other-schema and junk files left byte for byte by both
command lines, a full disk, a read-only store, the state a killed driver left, a huge snapshot count), among them
issue 35's cases that need no Ray; those with a local Ray are in ``test_executors.py`` (marked ``executors``).

Exit codes: 2 = bad input (names, values, files), 1 = a cell failed while others finished (its run is marked
failed, nothing of it stored), 0 = handled without loss (e.g. a corrupt checkpoint without --resume: start over).
Each case runs the real ``main`` of ``protocols.run``, ``metrics`` or ``leaderboard.build`` in-process, against a
store that already holds rows; the rows must be identical afterwards (a case that trains may only add rows).
"""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from common.store import Measurement, ResultsStore

RUN = "run"            # python -m protocols.run
METRICS = "metrics"    # python -m metrics
BOARD = "board"        # python -m leaderboard.build


def _case(cli, args, code, needle, cid=None, setup=None):
    return pytest.param(cli, args, code, needle, setup, id=cid or " ".join(args)[:60])


# ---- fixtures written by setups: {name} in args is replaced by the path of what the setup made -----------
def _junk_file(tmp):
    (tmp / "junk.bin").write_bytes(b"\x00garbage" * 64)


def _empty_file(tmp):
    (tmp / "empty.pth").write_bytes(b"")


def _a_file_named_out(tmp):
    (tmp / "blocker").write_text("a file where a folder should be")


def _unlabelled_folder(tmp):
    d = tmp / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")


def _empty_dir(tmp):
    (tmp / "emptydir").mkdir()


def _corrupt_cifar(tmp):
    from test_datasets import write_cifar
    write_cifar(tmp / "cifar" / "cifar-10-batches-py")
    (tmp / "cifar" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")


def _foreign_db(tmp):
    """Another program's SQLite database (rollback journal, one table of its own)."""
    import sqlite3
    con = sqlite3.connect(tmp / "foreign.db")
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.execute("INSERT INTO notes (body) VALUES ('keep me')")
    con.commit()
    con.close()


def _other_schema_db(tmp):
    """A store whose tables have other columns (no ``extra``, ``value`` renamed)."""
    import sqlite3
    con = sqlite3.connect(tmp / "other.db")
    con.execute("CREATE TABLE measurements (id INTEGER PRIMARY KEY, run_id TEXT, model TEXT, protocol TEXT, dataset "
                "TEXT, budget TEXT, seed INTEGER, metric TEXT, score REAL, created TEXT)")
    con.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, model TEXT, status TEXT)")
    con.execute("INSERT INTO measurements (run_id, model, metric, score) VALUES ('r', 'gan', 'fid', 1.0)")
    con.commit()
    con.close()


def _npz_pair(tmp):
    rng = np.random.default_rng(0)
    for name in ("f", "r"):
        np.savez(tmp / f"{name}.npz", x=rng.integers(0, 17, (30, 1, 8, 8), dtype=np.uint8))
    np.savez(tmp / "t.npz", x=rng.integers(0, 17, (60, 1, 8, 8), dtype=np.uint8), y=rng.integers(0, 10, 60))
    _a_file_named_out(tmp)


def _corrupt_last_pt(tmp, resume=False):
    from protocols.api import plan
    from protocols.pipeline import safe_name
    cfg = plan("ablation", ["vae"], [0], budget="smoke", overrides=SMALL_EVAL)[0][0]
    d = tmp / "runs" / "digits" / "ablation" / safe_name("vae") / f"seed0-{cfg.hash()}"
    d.mkdir(parents=True)
    (d / "last.pt").write_bytes(b"PK\x03\x04 truncated checkpoint")


SMALL_EVAL = {"eval.n_samples": "60"}
SMALL = ["--set", "eval.n_samples=60"]

RUN_CASES = [
    # names
    _case(RUN, ["--model", "nosuch"], 2, "unknown model 'nosuch'"),
    _case(RUN, ["--protocol", "nosuch"], 2, "unknown protocol 'nosuch'"),
    _case(RUN, ["--dataset", "nosuch"], 2, "unknown dataset 'nosuch'"),
    _case(RUN, ["--budget", "huge"], 2, "unknown budget 'huge'"),
    _case(RUN, ["--recipe", "nosuch"], 2, "unknown recipe 'nosuch'"),
    _case(RUN, ["--recipe", "nosuch", "--dry-run"], 2, "unknown recipe 'nosuch'"),
    _case(RUN, ["--protocol", "metric_sensitivity", "--model", "gan"], 2, "unknown cell 'gan'"),
    _case(RUN, ["--protocol", "gan_train_test", "--model", "gan-rd"], 2, "needs class-conditional models"),
    _case(RUN, ["--protocol", "ablation", "--model", "vade-s4b1"], 2, "vade-s4b1 cannot be built"),
    # command-line syntax
    _case(RUN, ["--seeds", "x"], 2, "invalid int value"),
    _case(RUN, ["--seeds", "0"], 2, "--seeds: must be a number >= 1, not 0"),
    _case(RUN, ["--seeds", "0", "--dry-run"], 2, "--seeds: must be a number >= 1, not 0"),
    _case(RUN, ["--seeds", "-2"], 2, "--seeds: must be a number >= 1, not -2"),
    _case(RUN, ["--seed", "-1"], 2, "--seed: must be a number >= 0, not -1"),
    _case(RUN, ["--seed", "-1", "--dry-run"], 2, "--seed: must be a number >= 0, not -1"),
    _case(RUN, ["--seed", "1.5"], 2, "invalid int value"),
    _case(RUN, ["--set", "nonsense"], 2, "use key=value"),
    _case(RUN, ["--set", "=3"], 2, "the key is empty"),
    _case(RUN, ["--nosuchflag"], 2, "unknown option(s): --nosuchflag"),
    _case(RUN, ["--dryrun"], 2, "unknown option(s): --dryrun (did you mean --dry-run?)"),
    _case(RUN, ["--seeeds", "2"], 2, "(did you mean --seeds?)"),
    _case(RUN, ["--resume", "--fresh"], 2, "pass one of them"),
    _case(RUN, ["--model"], 2, "expected one argument"),
    # keys
    _case(RUN, ["--set", "train.nosuch=1"], 2, "unknown config key 'train.nosuch'"),
    _case(RUN, ["--set", "train.stpes=3"], 2, "unknown config key 'train.stpes' (did you mean train.steps?)"),
    _case(RUN, ["--set", "eval.nosuch=1"], 2, "unknown config key 'eval.nosuch'"),
    _case(RUN, ["--set", "model.lambda_adv=10"], 2, "unknown config key 'model.lambda_adv'"),
    _case(RUN, ["--model", "vae", "--set", "model.adv_weight=10"], 2, "has no effect on vae"),
    _case(RUN, ["--set", "flowgan.gp_weight=1"], 2, "'flowgan' is not a model of this run"),
    _case(RUN, ["--set", "optim.lr=1"], 2, "'optim' is not a model of this run"),
    _case(RUN, ["--set", "seed=3"], 2, "unknown config key 'seed'"),
    _case(RUN, ["--model", "vae", "--set", "vae.nosuch=1"], 2, "unknown config key 'model.nosuch'"),
    # values: types
    _case(RUN, ["--set", "train.steps=ten"], 2, "bad value for train.steps: 'ten' is not a valid int"),
    _case(RUN, ["--set", "train.lr=fast"], 2, "bad value for train.lr"),
    _case(RUN, ["--set", "train.channels_last=maybe"], 2, "bad value for train.channels_last"),
    _case(RUN, ["--set", "model.width=4.5"], 2, "bad value for model.width"),
    # values: ranges and choices
    _case(RUN, ["--set", "train.steps=0"], 2, "train.steps=0 must be >= 1"),
    _case(RUN, ["--set", "train.steps=-5"], 2, "train.steps=-5 must be >= 1"),
    _case(RUN, ["--set", "train.batch_size=0"], 2, "train.batch_size=0 must be >= 1"),
    _case(RUN, ["--set", "train.batch_size=-8"], 2, "train.batch_size=-8 must be >= 1"),
    _case(RUN, ["--set", "train.batch_size=5000"], 2, "exceeds the 1257 training images"),
    _case(RUN, ["--set", "train.lr=0"], 2, "train.lr=0.0 must be > 0"),
    _case(RUN, ["--set", "train.lr=-1"], 2, "train.lr=-1.0 must be > 0"),
    _case(RUN, ["--set", "train.lr=nan"], 2, "must be a finite number"),
    _case(RUN, ["--set", "train.lr=inf"], 2, "must be a finite number"),
    _case(RUN, ["--set", "train.beta1=1.5"], 2, "train.beta1=1.5 must be < 1"),
    _case(RUN, ["--set", "train.beta2=-0.1"], 2, "train.beta2=-0.1 must be >= 0"),
    _case(RUN, ["--set", "train.grad_clip=-1"], 2, "train.grad_clip=-1.0 must be >= 0"),
    _case(RUN, ["--set", "train.log_every=0"], 2, "train.log_every=0 must be >= 1"),
    _case(RUN, ["--set", "train.val_images=0"], 2, "train.val_images=0 must be >= 1"),
    _case(RUN, ["--set", "train.threads=-1"], 2, "train.threads=-1 must be >= 0"),
    _case(RUN, ["--set", "train.optimizer=sgd"], 2, "must be one of adamax, adam"),
    _case(RUN, ["--set", "train.device=tpu9"], 2, "train.device='tpu9' is not valid"),
    _case(RUN, ["--set", "train.device=cuda:x"], 2, "is not valid"),
    _case(RUN, ["--set", "eval.select=nosuch"], 2, "must be one of val_bpd, last"),
    _case(RUN, ["--set", "eval.extractor=nosuch"], 2, "must be one of domain, inception"),
    _case(RUN, ["--set", "eval.n_samples=0"], 2, "eval.n_samples=0 must be >= 1"),
    _case(RUN, ["--set", "eval.n_samples=3"], 2, "must be >= eval.prd_clusters"),
    _case(RUN, ["--set", "eval.n_real=-1"], 2, "eval.n_real=-1 must be >= 0"),
    _case(RUN, ["--set", "eval.batch_size=0"], 2, "eval.batch_size=0 must be >= 1"),
    _case(RUN, ["--set", "eval.iw_k=-1"], 2, "eval.iw_k=-1 must be >= 0"),
    _case(RUN, ["--set", "eval.bpd_images=-2"], 2, "eval.bpd_images=-2 must be >= 0"),
    _case(RUN, ["--set", "eval.prd_clusters=1"], 2, "eval.prd_clusters=1 must be >= 2"),
    _case(RUN, ["--set", "eval.prd_runs=0"], 2, "eval.prd_runs=0 must be >= 1"),
    _case(RUN, ["--set", "eval.prdc_k=0"], 2, "eval.prdc_k=0 must be >= 1"),
    _case(RUN, ["--set", "eval.gan_seeds=0"], 2, "eval.gan_seeds=0 must be >= 1"),
    _case(RUN, ["--set", "eval.snapshots=-1"], 2, "eval.snapshots=-1 must be >= 0"),
    _case(RUN, ["--set", "eval.snapshots=1000000000000"], 2, "eval.snapshots=1000000000000 must be <= 10000",
          cid="a huge snapshot count is refused before any schedule is built"),
    _case(RUN, ["--set", "eval.snapshots=1000000000000", "--dry-run"], 2, "must be <= 10000"),
    _case(RUN, ["--set", "eval.snapshots=5"], 2, "eval.snapshots=5 is more than train.steps=4"),
    _case(RUN, ["--set", "eval.snapshots=5", "--dry-run"], 2, "eval.snapshots=5 is more than train.steps=4"),
    _case(RUN, ["--set", "eval.snapshot_samples=1"], 2, "eval.snapshot_samples=1 must be >= 2"),
    _case(RUN, ["--set", "eval.snapshot_bpd_images=0"], 2, "eval.snapshot_bpd_images=0 must be >= 1"),
    _case(RUN, ["--set", "train.sample_every=-1"], 2, "train.sample_every=-1 must be >= 0"),
    _case(RUN, ["--set", "train.ckpt_every=-1"], 2, "train.ckpt_every=-1 must be >= 0"),
    _case(RUN, ["--set", "train.val_every=-1"], 2, "train.val_every=-1 must be >= 0"),
    _case(RUN, ["--set", "train.ema=1"], 2, "train.ema=1.0 must be < 1"),
    _case(RUN, ["--set", "train.scalar_lr=-1"], 2, "train.scalar_lr=-1.0 must be >= 0"),
    _case(RUN, ["--set", "train.plateau_every=0"], 2, "train.plateau_every=0 must be >= 1"),
    _case(RUN, ["--set", "train.plateau_patience=-1"], 2, "train.plateau_patience=-1 must be >= 0"),
    _case(RUN, ["--set", "train.plateau_tol=-1"], 2, "train.plateau_tol=-1.0 must be >= 0"),
    _case(RUN, ["--set", "train.autocast=fp8"], 2, "must be one of off, bf16, auto"),
    _case(RUN, ["--set", "train.phase_lr=gen=0"], 2, "train.phase_lr: bad entry"),
    _case(RUN, ["--set", "model.width=0"], 2, "model.width=0 must be >= 1"),
    _case(RUN, ["--set", "model.z_dim=-1"], 2, "model.z_dim=-1 must be >= 1"),
    _case(RUN, ["--set", "model.gp_weight=-1"], 2, "model.gp_weight=-1.0 must be >= 0"),
    _case(RUN, ["--set", "model.sample_noise=blur"], 2, "must be one of mean, gaussian"),
    _case(RUN, ["--set", "model.disc=nosuch"], 2, "must be one of simple, rd"),
    _case(RUN, ["--set", "model.gen_norm=ln", "--model", "gan"], 2, "must be one of bn, wn"),
    _case(RUN, ["--protocol", "sota", "--model", "glow", "--set", "model.temperature=0"], 2,
          "model.temperature=0.0 must be > 0"),
    # data
    _case(RUN, ["--dataset", "folder:{tmp}/nowhere"], 2, "not found"),
    _case(RUN, ["--dataset", "folder:{tmp}/imgs@0"], 2, "RES a positive integer"),
    _case(RUN, ["--dataset", "folder:{tmp}/imgs@8", "--protocol", "gan_train_test"], 2, "has no labels",
          setup=_unlabelled_folder, cid="folder dataset in a protocol that needs labels fails before training"),
    _case(RUN, ["--dataset", "cifar10", "--data-root", "{tmp}/emptydir"], 2, "dataset 'cifar10' not found",
          setup=_empty_dir),
    _case(RUN, ["--dataset", "fashion-mnist", "--data-root", "{tmp}/emptydir"], 2,
          "dataset 'fashion-mnist' not found", setup=_empty_dir),
    _case(RUN, ["--dataset", "cifar10", "--data-root", "{tmp}/cifar"], 2, "data_batch_2", setup=_corrupt_cifar),
    # files of the run
    _case(RUN, ["--budget", "paper", "--model", "vae", "--inception-weights", "{tmp}/none.pth"], 2,
          "Inception weights not found"),
    _case(RUN, ["--budget", "paper", "--model", "vae", "--inception-weights", "{tmp}/empty.pth"], 2, "empty.pth",
          setup=_empty_file),
    _case(RUN, ["--budget", "paper", "--model", "vae", "--inception-weights", "{tmp}/junk.bin"], 2, "junk.bin",
          setup=_junk_file),
    _case(RUN, ["--model", "vae", "--results", "{tmp}/junk.bin"], 2, "junk.bin", setup=_junk_file,
          cid="results store that is not SQLite"),
    _case(RUN, ["--model", "vae", "--results", "{tmp}"], 2, "is not a file", cid="results store is a folder"),
    _case(RUN, ["--model", "vae", "--results", "{tmp}/blocker/r.sqlite"], 2, "is not a folder",
          setup=_a_file_named_out, cid="results store under a file"),
    _case(RUN, ["--model", "vae", "--runs", "{tmp}/blocker"], 2, "--runs", setup=_a_file_named_out,
          cid="run folder is a file"),
    # failures while training: the cell fails, nothing of it is stored, other cells would continue
    _case(RUN, ["--model", "vae", "--set", "model.log_sigma_init=1e6", *SMALL], 1, "loss",
          cid="non-finite loss stops the cell"),
    _case(RUN, ["--model", "vae", "--resume", *SMALL], 1, "is corrupt or unreadable",
          setup=lambda t: _corrupt_last_pt(t, True), cid="corrupt last.pt with --resume"),
    # handled without loss
    _case(RUN, ["--model", "vae", *SMALL], 0, "unreadable; starting over", setup=_corrupt_last_pt,
          cid="corrupt last.pt without --resume starts over"),
    _case(RUN, ["--model", "vae", "--set", "vae.train.steps=2", *SMALL, "--site", "{tmp}/blocker"], 0,
          "leaderboard not rebuilt", setup=_a_file_named_out, cid="page cannot be written: results kept"),
]

BOARD_CASES = [
    _case(BOARD, ["--results", "{tmp}/junk.bin", "--site", "{tmp}/site"], 2, "junk.bin", setup=_junk_file,
          cid="page from a store that is not SQLite"),
    _case(BOARD, ["--results", "{tmp}", "--site", "{tmp}/site"], 2, "is a folder", cid="page from a folder"),
    _case(BOARD, ["--results", "{tmp}/r.sqlite", "--site", "{tmp}/blocker"], 2, "blocker", setup=_a_file_named_out,
          cid="page into a file"),
    _case(BOARD, ["--results", "{tmp}/r.sqlite", "--site", "{tmp}/blocker/site"], 2, "blocker",
          setup=_a_file_named_out, cid="page under a file"),
    _case(BOARD, ["--results", "{tmp}/none.sqlite", "--site", "{tmp}/site"], 0, "no results store",
          cid="page before any result"),
]

X = ["--executor"]
EXECUTOR_CASES = [     # refused while parsing (or by ExecutorOptions.check): nothing is loaded, nothing submitted
    _case(RUN, [*X, "nosuch"], 2, "unknown executor 'nosuch'; valid executors: local, submitit, ray"),
    _case(RUN, [*X, "submitit", "--slurm-time", "-5"], 2, "--slurm-time: must be a number >= 1, not -5"),
    _case(RUN, [*X, "submitit", "--slurm-time", "0"], 2, "--slurm-time: must be a number >= 1, not 0"),
    _case(RUN, [*X, "submitit", "--slurm-time", "0", "--dry-run"], 2, "--slurm-time: must be a number >= 1"),
    _case(RUN, [*X, "submitit", "--slurm-time", "-5", "--dry-run"], 2, "--slurm-time: must be a number >= 1"),
    _case(RUN, [*X, "submitit", "--slurm-time", "1.5"], 2, "--slurm-time: invalid int value: '1.5'"),
    _case(RUN, [*X, "submitit", "--slurm-time", "soon"], 2, "--slurm-time: invalid int value"),
    _case(RUN, [*X, "ray", "--workers", "0"], 2, "--workers: must be a number >= 1, not 0"),
    _case(RUN, [*X, "ray", "--workers", "-3", "--dry-run"], 2, "--workers: must be a number >= 1"),
    _case(RUN, [*X, "ray", "--gpus-per-cell", "-1"], 2, "--gpus-per-cell: must be a number >= 0, not -1"),
    _case(RUN, [*X, "ray", "--gpus-per-cell", "nan"], 2, "--gpus-per-cell: must be a number >= 0, not nan"),
    _case(RUN, [*X, "ray", "--gpus-per-cell", "inf"], 2, "--gpus-per-cell: must be a number >= 0, not inf"),
    _case(RUN, [*X, "ray", "--gpus-per-cell", "1.5"], 2, "above 1 a cell takes whole GPUs"),
    _case(RUN, [*X, "submitit", "--gpus-per-cell", "0.5"], 2, "Slurm allocates whole GPUs"),
    _case(RUN, [*X, "ray", "--cpus-per-cell", "0"], 2, "--cpus-per-cell: must be a number >= 1, not 0"),
    _case(RUN, [*X, "ray", "--cpus-per-cell", "-2", "--dry-run"], 2, "--cpus-per-cell: must be a number >= 1"),
    _case(RUN, [*X, "ray", "--retries", "-1"], 2, "--retries: must be a number >= 0, not -1"),
    _case(RUN, [*X, "ray", "--connect-timeout", "0"], 2, "--connect-timeout: must be a number >= 1, not 0"),
    _case(RUN, [*X, "ray", "--connect-timeout", "-30"], 2, "--connect-timeout: must be a number >= 1"),
    _case(RUN, [*X, "ray", "--connect-timeout", "nan"], 2, "--connect-timeout: must be a number >= 1"),
    _case(RUN, [*X, "ray", "--stall-after", "0"], 2, "--stall-after: must be a number >= 1, not 0"),
    _case(RUN, [*X, "ray", "--stall-after", "inf"], 2, "--stall-after: must be a number >= 1, not inf"),
    _case(RUN, [*X, "submitit", "--submitit-cluster", "pbs"], 2, "--submitit-cluster: invalid choice: 'pbs'"),
    _case(RUN, ["--tune", "0"], 2, "--tune: must be a number >= 1, not 0"),
    _case(RUN, ["--gpus-per-cell", "1"], 2, "options of --executor submitit or ray"),
    _case(RUN, ["--cpus-per-cell", "2"], 2, "options of --executor submitit or ray"),
    _case(RUN, ["--slurm-partition", "gpu"], 2, "--slurm-partition is an option of --executor submitit"),
    _case(RUN, [*X, "ray", "--slurm-partition", "gpu"], 2, "--slurm-partition is an option of --executor submitit"),
    _case(RUN, ["--ray-address", "127.0.0.1:1"], 2, "--ray-address is an option of --executor ray"),
    _case(RUN, [*X, "submitit", "--ray-address", "127.0.0.1:1"], 2, "--ray-address is an option of --executor ray"),
    _case(RUN, [*X, "ray", "--slurm-tme", "5"], 2, "(did you mean --slurm-time?)"),
    _case(RUN, [*X, "ray", "--cpus-per-cel", "x"], 2, "--cpus-per-cell: invalid int value: 'x'",
          cid="an abbreviated flag is argparse's prefix match, its value still checked"),
]

M = ["--fake", "{tmp}/f.npz", "--real", "{tmp}/r.npz"]
METRICS_CASES = [      # python -m metrics: every numeric flag out of range, missing inputs, unknown names
    _case(METRICS, ["--fake", "{tmp}/f.npz"], 2, "missing required option(s): --real", setup=_npz_pair,
          cid="metrics without --real"),
    _case(METRICS, ["--real", "{tmp}/r.npz"], 2, "missing required option(s): --fake", setup=_npz_pair),
    _case(METRICS, [], 2, "missing required option(s): --fake, --real"),
    _case(METRICS, [*M, "--batch-size", "0"], 2, "--batch-size: must be a number >= 1, not 0", setup=_npz_pair),
    _case(METRICS, [*M, "--batch-size", "-4"], 2, "--batch-size: must be a number >= 1, not -4", setup=_npz_pair),
    _case(METRICS, [*M, "--batch-size", "x"], 2, "--batch-size: invalid int value", setup=_npz_pair),
    _case(METRICS, [*M, "--levels", "1"], 2, "--levels: must be a number >= 2, not 1", setup=_npz_pair),
    _case(METRICS, [*M, "--levels", "0"], 2, "--levels: must be a number >= 2, not 0", setup=_npz_pair),
    _case(METRICS, [*M, "--seed", "-1"], 2, "--seed: must be a number >= 0, not -1", setup=_npz_pair),
    _case(METRICS, [*M, "--prd-clusters", "0"], 2, "--prd-clusters: must be a number >= 1", setup=_npz_pair),
    _case(METRICS, [*M, "--prd-runs", "0"], 2, "--prd-runs: must be a number >= 1", setup=_npz_pair),
    _case(METRICS, [*M, "--prdc-k", "0"], 2, "--prdc-k: must be a number >= 1", setup=_npz_pair),
    _case(METRICS, [*M, "--prdc-k", "-3"], 2, "--prdc-k: must be a number >= 1", setup=_npz_pair),
    _case(METRICS, [*M, "--extractor", "clip9"], 2, "--extractor: invalid choice: 'clip9'", setup=_npz_pair),
    _case(METRICS, [*M, "--metrics", "nosuch"], 2, "nosuch", setup=_npz_pair),
    _case(METRICS, [*M, "--device", "tpu7"], 2, "--device: 'tpu7' is not a torch device", setup=_npz_pair),
    _case(METRICS, [*M, "--device", "cuda:99"], 2, "--device: cuda:99: this machine has", setup=_npz_pair),
    _case(METRICS, [*M, "--extractor", "domain", "--levels", "17", "--train", "{tmp}/none.npz"], 2, "none.npz",
          setup=_npz_pair),
    _case(METRICS, [*M, "--extractor", "domain", "--levels", "17", "--train", "{tmp}/r.npz"], 2, "has no labels",
          setup=_npz_pair),
    _case(METRICS, [*M, "--extractor", "domain", "--levels", "17", "--train", "{tmp}/t.npz", "--heldout",
                    "{tmp}/none.npz"], 2, "none.npz", setup=_npz_pair),
    _case(METRICS, [*M, "--extractor", "domain", "--levels", "17", "--train", "{tmp}/t.npz", "--cache-dir",
                    "{tmp}/blocker"], 2, "--cache-dir: ", setup=_npz_pair, cid="metrics cache folder is a file"),
    _case(METRICS, [*M, "--out-dir", "{tmp}/blocker/prd"], 2, "--out-dir: ", setup=_npz_pair,
          cid="metrics output folder under a file"),
    _case(METRICS, [*M, "--nosuch"], 2, "unknown option(s): --nosuch", setup=_npz_pair),
    _case(METRICS, [*M, "--batchsize", "8"], 2, "(did you mean --batch-size?)", setup=_npz_pair),
    _case(METRICS, ["--fake", "{tmp}/none.npz", "--real", "{tmp}/r.npz", "--levels", "17", "--extractor", "domain",
                    "--metrics", "fid"], 2, "none.npz", setup=_npz_pair),
]

BOARD_CASES += [
    _case(BOARD, ["--nosuch"], 2, "unknown option(s): --nosuch", cid="leaderboard with an unknown flag"),
    _case(BOARD, ["--reslts", "{tmp}/r.sqlite"], 2, "(did you mean --results?)"),
    _case(BOARD, ["--results"], 2, "expected one argument"),
    _case(BOARD, ["--results", "{tmp}/other.db", "--site", "{tmp}/site"], 2, "table measurements lacks column(s)",
          setup=_other_schema_db, cid="page from a store of another schema"),
    _case(BOARD, ["--results", "{tmp}/foreign.db", "--site", "{tmp}/site"], 2, "a database of another program",
          setup=_foreign_db, cid="page from another program's SQLite file"),
]

RUN_CASES += [
    _case(RUN, ["--model", "vae", "--results", "{tmp}/foreign.db"], 2, "a database of another program (its tables: "
          "notes)", setup=_foreign_db, cid="results store that is another program's SQLite file"),
    _case(RUN, ["--model", "vae", "--results", "{tmp}/other.db"], 2, "lacks column(s) budget", setup=_other_schema_db,
          cid="results store of another schema"),
]

CASES = RUN_CASES + EXECUTOR_CASES + METRICS_CASES + BOARD_CASES


# ---- the harness -------------------------------------------------------------------------------------------
def _seed_store(path):
    store = ResultsStore(path)
    store.add([Measurement("earlier", "gan", "ablation", "digits", "cpu", s, m, v, cell_key=f"k{s}", group_key="g")
               for s in (0, 1) for m, v in (("bpd", 4.1), ("fid", 1.0 + s))])
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="c", text="t",
                    status="inconclusive", evidence={})
    return store


def _snapshot(path):
    if not os.path.isfile(path):
        return None
    store = ResultsStore(path, readonly=True)
    return ([tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in r.items())) for r in store.measurements()],
            [(r["run_id"], r["status"]) for r in store.runs()])


def _models(rows) -> set:
    return {dict(r)["model"].strip('"') for r in rows}


def _main(cli):
    if cli == RUN:
        from protocols.run import main
    elif cli == METRICS:
        from metrics.cli import main
    else:
        from leaderboard.build import main
    return main


@pytest.fixture
def bed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AVADE_DATA", raising=False)
    monkeypatch.delenv("AVADE_INCEPTION", raising=False)
    import protocols.datasets as D
    monkeypatch.setattr(D, "SYSTEM_DIRS", {"fashion-mnist": (str(tmp_path / "no-system-dir"),)})
    threads = torch.get_num_threads()
    _seed_store(tmp_path / "r.sqlite")
    yield tmp_path
    torch.set_num_threads(threads)
    for p in tmp_path.rglob("*"):   # read-only folders made by a case must not block the cleanup
        if p.is_dir():
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def _args(cli, args, tmp):
    args = [a.replace("{tmp}", str(tmp)) for a in args]
    if cli == RUN:
        defaults = {"--budget": "smoke", "--results": str(tmp / "r.sqlite"), "--runs": str(tmp / "runs"),
                    "--site": str(tmp / "site")}
        for flag, value in defaults.items():
            if flag not in args:
                args = [flag, value, *args]
        args = ["--no-progress", "--seeds", "1", *args] if "--seeds" not in args else ["--no-progress", *args]
    return args


@pytest.mark.parametrize("cli, args, code, needle, setup", CASES)
def test_bad_input(bed, capsys, cli, args, code, needle, setup):
    if setup is not None:
        setup(bed)
    store_path = bed / "r.sqlite"
    before = _snapshot(store_path)
    try:
        rc = _main(cli)(_args(cli, args, bed))
    except SystemExit as e:          # argparse's own errors
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == code, (out[-1500:], err[-1500:])
    assert "Traceback" not in err and "Traceback" not in out
    if code == 2:
        lines = [l for l in err.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), err
        assert needle in lines[0], lines[0]
    else:
        assert needle in out + err, (out[-1500:], err[-1500:])
    after = _snapshot(store_path)
    if before is None:
        return
    rows, runs = after
    assert rows[:len(before[0])] == before[0] and runs[:len(before[1])] == before[1]   # nothing lost or changed
    if code == 2:
        assert after == before                       # refused up front: nothing added either
    elif code == 1:                                  # a failed cell stores no measurement, and its run says so
        assert _models(rows[len(before[0]):]) <= {"real"}       # (the real-data floor cell finished beside it)
        assert "failed" in {status for _, status in runs[len(before[1]):]}


def test_the_table_is_big_enough():
    assert f"the {len(CASES)} rows of ``CASES``" in __doc__      # the count the module docstring states


# ---- bad inputs that need more than a row of the table ---------------------------------------------------
def _call(cli, args, tmp):
    try:
        return _main(cli)(_args(cli, args, tmp))
    except SystemExit as e:
        return e.code


def _one_line(capsys, rc, *needles) -> str:
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:"), (rc, out[-1500:], err[-1500:])
    assert "Traceback" not in out + err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _digest(path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("cli", [RUN, BOARD])
@pytest.mark.parametrize("make, name, needle", [(_foreign_db, "foreign.db", "database of another program"),
                                                 (_other_schema_db, "other.db", "lacks column(s)"),
                                                 (_junk_file, "junk.bin", "not an SQLite file")])
def test_a_refused_file_is_left_byte_for_byte(bed, capsys, cli, make, name, needle):
    """A file handed to --results that is not a store of ours is refused before anything touches it: its bytes,
    its journal mode (no switch to WAL) and its folder (no -wal, -shm or .locks beside it) stay as they were."""
    make(bed)
    path, before = bed / name, _digest(bed / name)
    args = ["--model", "vae", "--results", str(path)] if cli == RUN else ["--results", str(path), "--site",
                                                                          str(bed / "site")]
    _one_line(capsys, _call(cli, args, bed), needle, name)
    assert _digest(path) == before
    assert not [p.name for p in bed.iterdir() if p.name.startswith(name) and p.name != name]


def _runs(path):
    return {r["run_id"]: r["status"] for r in ResultsStore(path, readonly=True).runs()}


TRAINED = ["--model", "vae", "--set", "vae.train.steps=2", *SMALL, "--no-leaderboard"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Run folders whose cells (vae, the floor) a worker finished: each holds its result.json."""
    d = tmp_path_factory.mktemp("finished")
    assert _call(RUN, TRAINED, d) == 0
    return d / "runs"


def _with_finished_cells(bed, finished):
    import shutil
    shutil.copytree(finished, bed / "runs")


def test_a_full_disk_names_its_cause_and_the_finished_cell_is_stored_by_the_rerun(bed, capsys, monkeypatch,
                                                                                  finished):
    """The disk is full when a finished cell is stored: SQLite's own SQLITE_FULL (a size limit on the store's
    connections from then on, the error a full disk gives) is named, not hidden behind a failing ROLLBACK; the
    store keeps its rows, the run says 'interrupted', and the rerun stores the cell from its result.json."""
    import sqlite3

    from common import store as S
    _with_finished_cells(bed, finished)
    store, before = bed / "r.sqlite", _snapshot(bed / "r.sqlite")
    full, connect, commit = {"on": False}, sqlite3.connect, S.ResultsStore.commit_cell

    def limited(*a, **k):
        con = connect(*a, **k)
        if full["on"] and not k.get("uri"):
            con.execute("PRAGMA max_page_count=1")       # never below the file's size: it may not grow
        return con

    def commit_on_a_full_disk(self, *a, **k):
        full["on"] = True
        return commit(self, *a, **k)
    monkeypatch.setattr(sqlite3, "connect", limited)
    monkeypatch.setattr(S.ResultsStore, "commit_cell", commit_on_a_full_disk)
    line = _one_line(capsys, _call(RUN, TRAINED, bed), "the disk is full", "finished cells are safe in their run "
                     "directories")
    assert "rollback" not in line and "avade-bench SQLite store" not in line
    monkeypatch.undo()
    assert _snapshot(store)[0] == before[0]                                     # no row stored, none lost
    assert "interrupted" in set(_runs(store).values())
    assert _call(RUN, TRAINED, bed) == 0 and capsys.readouterr().out.count("stored now") == 2
    assert set(_runs(store).values()) == {"done"}


def test_a_read_only_store_says_so(bed, capsys, monkeypatch):
    import sqlite3
    connect = sqlite3.connect

    def read_only(path, *a, **k):           # as a read-only file system would open it
        if k.get("uri"):
            return connect(path, *a, **k)
        return connect(f"file:{os.path.abspath(path)}?mode=ro", *a, **{**k, "uri": True})
    monkeypatch.setattr(sqlite3, "connect", read_only)
    before = _snapshot(bed / "r.sqlite")
    _one_line(capsys, _call(RUN, ["--model", "vae", *SMALL], bed), "read-only", "pass another --results")
    monkeypatch.undo()
    assert _snapshot(bed / "r.sqlite") == before


def test_what_a_killed_driver_left_is_marked_interrupted_and_shown_on_the_page(bed, capsys, finished):
    """A run left 'running' and a claim row of a process that is gone (their cell's lock is free) are marked
    'interrupted' and removed by the next run, which says so; a claim a live process holds is left alone; the page
    lists the interrupted run."""
    from common.store import utcnow
    store = ResultsStore(bed / "r.sqlite")
    store.start_run("ablation:digits:smoke:gan:s0:dead", model="gan", protocol="ablation", dataset="digits",
                    budget="smoke", seed=0, cell_key="kdead")
    store._write("INSERT INTO cell_claims (cell_key, run_id, pid, host, started) VALUES (?,?,?,?,?)",
                 [("kdead", "ablation:digits:smoke:gan:s0:dead", 4_000_000, "gone", utcnow())])
    live = store.claim_cell("klive", "ablation:digits:smoke:gan:s1:live")
    store.start_run("ablation:digits:smoke:gan:s1:live", model="gan", protocol="ablation", dataset="digits",
                    budget="smoke", seed=1, cell_key="klive")
    _with_finished_cells(bed, finished)
    try:
        rc = _call(RUN, [a for a in TRAINED if a != "--no-leaderboard"], bed)
        out = capsys.readouterr().out
        assert rc == 0 and "marked 1 run(s) left 'running' by a driver that stopped as 'interrupted'" in out
        runs = _runs(bed / "r.sqlite")
        assert runs["ablation:digits:smoke:gan:s0:dead"] == "interrupted"
        assert runs["ablation:digits:smoke:gan:s1:live"] == "running"
        assert [r["cell_key"] for r in store.query("SELECT cell_key FROM cell_claims")] == ["klive"]
    finally:
        live.release()
    page = (bed / "site" / "index.html").read_text()
    assert 'id="unfinished"' in page and 'class="badge st-interrupted"' in page and 'st-running' in page


def test_a_huge_snapshot_count_is_never_enumerated():
    """The schedule of n >= steps snapshots is every step, computed without looping over n."""
    import time

    from protocols.config import snapshot_steps
    t = time.perf_counter()
    assert snapshot_steps(5, 10**15) == [1, 2, 3, 4, 5] and snapshot_steps(8, 4) == [2, 4, 6, 8]
    assert time.perf_counter() - t < 1.0
