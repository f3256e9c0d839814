"""Bad input, as a table: every command line of the suite given something wrong answers with the expected exit
code and one clear line, never a traceback, and never loses or changes a stored row.

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
    _case(RUN, ["--protocol", "metric_sensitivity", "--model", "gan"], 2, "unknown cell 'gan'"),
    _case(RUN, ["--protocol", "gan_train_test", "--model", "gan-rd"], 2, "needs class-conditional models"),
    _case(RUN, ["--protocol", "ablation", "--model", "vade-s4b1"], 2, "vade-s4b1 cannot be built"),
    # command-line syntax
    _case(RUN, ["--seeds", "x"], 2, "invalid int value"),
    _case(RUN, ["--seeds", "0"], 2, "--seeds must be at least 1"),
    _case(RUN, ["--seed", "-1"], 2, "--seed must be >= 0"),
    _case(RUN, ["--set", "nonsense"], 2, "use key=value"),
    _case(RUN, ["--set", "=3"], 2, "the key is empty"),
    _case(RUN, ["--nosuchflag"], 2, "unrecognized arguments"),
    # keys
    _case(RUN, ["--set", "train.nosuch=1"], 2, "unknown config key 'train.nosuch'"),
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
    _case(RUN, ["--dataset", "folder:{tmp}/imgs@8"], 2, "has no labels", setup=_unlabelled_folder,
          cid="folder dataset with the domain extractor fails before training"),
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
    _case(RUN, ["--model", "vae", "--out", "{tmp}/blocker"], 2, "--out", setup=_a_file_named_out,
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
    _case(BOARD, ["--results", "{tmp}/junk.bin", "--out", "{tmp}/site"], 2, "junk.bin", setup=_junk_file,
          cid="page from a store that is not SQLite"),
    _case(BOARD, ["--results", "{tmp}", "--out", "{tmp}/site"], 2, "is a folder", cid="page from a folder"),
    _case(BOARD, ["--results", "{tmp}/r.sqlite", "--out", "{tmp}/blocker"], 2, "blocker", setup=_a_file_named_out,
          cid="page into a file"),
    _case(BOARD, ["--results", "{tmp}/r.sqlite", "--out", "{tmp}/blocker/site"], 2, "blocker",
          setup=_a_file_named_out, cid="page under a file"),
    _case(BOARD, ["--results", "{tmp}/none.sqlite", "--out", "{tmp}/site"], 0, "no results store",
          cid="page before any result"),
]

CASES = RUN_CASES + BOARD_CASES


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
        defaults = {"--budget": "smoke", "--results": str(tmp / "r.sqlite"), "--out": str(tmp / "runs"),
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
    assert len(CASES) >= 80
