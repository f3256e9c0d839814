"""Equal-budget tuning studies (protocols/tuning.py, protocols/trials.py, models/spaces.py, common/studies.py): a
trial's configuration is a function of (study, trial number), trials never read the test split, a pruned trial
stops at the snapshot after the pruner's decision (here, and through submitit: marked ``executors``), unequal
spaces and bad input are refused in one line, a killed study resumes without running a trial twice (``slow``)."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

optuna = pytest.importorskip("optuna", reason='pip install -e ".[tune]"')

import protocols.api  # noqa: E402,F401  (imported before a test patches protocols.datasets.load_dataset: its binding stays)
from common.store import ResultsStore  # noqa: E402
from common.studies import StudyRecords  # noqa: E402
from models.spaces import SPACES, SpaceError, apply_specs, check_equal, settings, space_for  # noqa: E402
from protocols import run as cli  # noqa: E402
from protocols import tuning as T  # noqa: E402
from protocols.trials import PRUNE_FILE, TRIAL_FILE, validation_view  # noqa: E402
from protocols.verdicts import tuning_evidence  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])
#: a smoke study of seconds: 8 steps of the vae, 60 samples, one thread
SMOKE = {"train.threads": "1", "train.steps": "8", "eval.n_samples": "60", "eval.snapshot_samples": "40",
         "eval.snapshot_bpd_images": "40"}


def _spec(**kw):
    base = dict(protocol="ablation", trials=3, models=["vae"], budget="smoke", overrides=dict(SMOKE))
    return T.StudySpec(**{**base, **kw})


def _asked_hashes(spec, folder, n):
    plan = T.plan_study(spec)
    study = T.ModelStudy(plan, plan.models[0], folder)
    try:
        return [study.ask(lambda cfg: None).cfg.hash() for _ in range(n)]
    finally:
        study.close()


def test_a_trials_config_hash_differs_from_its_neighbours_and_equals_a_rerun(tmp_path):
    spec = _spec(models=["avade"])
    first = _asked_hashes(spec, tmp_path / "a", 3)
    assert len(set(first)) == 3                                   # each trial its own configuration
    assert _asked_hashes(spec, tmp_path / "b", 3) == first        # the same study asks the same, in order
    resumed = _asked_hashes(spec, tmp_path / "a", 1)              # a reopened study goes on: trial #3
    assert resumed == _asked_hashes(spec, tmp_path / "c", 4)[3:]
    other = _asked_hashes(replace(spec, seed=1), tmp_path / "d", 3)
    assert not set(other) & set(first)                            # another study seed, other trials


def test_trial_n_of_every_model_tries_the_same_values_of_the_knobs_they_share(tmp_path):
    """Random search with per-trial seeds: paired draws (common random numbers) across the models of a study."""
    plan = T.plan_study(_spec(models=["gan", "vae", "avade"], trials=2))
    asked = {}
    for mp in plan.models:
        study = T.ModelStudy(plan, mp, tmp_path)
        try:
            asked[mp.model] = [study.ask(lambda cfg: None).params for _ in range(2)]
        finally:
            study.close()
    for n in range(2):
        assert {k: asked["gan"][n][k] for k in ("lr", "beta1", "beta2")} == asked["vae"][n]
        assert {k: asked["avade"][n][k] for k in asked["gan"][n]} == asked["gan"][n]
    assert asked["gan"][0] != asked["gan"][1]


def test_a_trial_sets_exactly_the_knobs_of_its_space():
    plan = T.plan_study(_spec(models=["gan"]))
    mp = plan.models[0]
    params = {"lr": 3e-3, "beta1": 0.2, "beta2": 0.95, "disc_lr": 1e-3, "disc_steps": 3, "gp_weight": 7.0}
    cfg = T.trial_config(plan, mp, params)
    assert (cfg.train.lr, cfg.train.beta1, cfg.train.beta2, cfg.train.disc_steps) == (3e-3, 0.2, 0.95, 3)
    assert cfg.train.phase_lr == "disc=0.001" and cfg.model_cfg.gp_weight == 7.0
    assert cfg.seed == T.SEARCH_SEED and cfg.hash() != mp.base.hash()
    assert settings(mp.space, params)["train.phase_lr"] == "disc=0.001"


def test_unequal_spaces_are_refused(monkeypatch):
    core = {k.name: k for k in space_for("avade")}
    wider = tuple(replace(k, high=0.1) if k.name == "lr" else k for k in core.values())
    monkeypatch.setitem(SPACES._items, "avade", wider)
    with pytest.raises(SpaceError, match="unequal tuning: knob lr"):
        T.plan_study(_spec(models=["gan", "avade"]))
    # a knob only one model has is no difference; --space makes a shared knob equal again
    check_equal({"vae": space_for("vae"), "gan": space_for("gan")})
    check_equal(apply_specs({"gan": space_for("gan"), "avade": wider}, ["lr=1e-4:1e-2"]))


@pytest.mark.parametrize("args, needle", [
    (["--tune", "0"], "--tune: must be a number >= 1"),
    (["--tune", "2", "--space", "nope=1:2"], "unknown knob 'nope'"),
    (["--tune", "2", "--space", "lr=1e-2:1e-4"], "is empty"),
    (["--tune", "2", "--space", "lr=3:x"], "give LOW:HIGH"),
    (["--tune", "2", "--criterion", "sharpness"], "unknown --criterion 'sharpness'"),
    (["--tune", "2", "--sampler", "grid"], "unknown --sampler 'grid'"),
    (["--tune", "2", "--protocol", "datasets"], "no claims to confirm"),
    (["--tune", "2", "--protocol", "metric_sensitivity"], "trains no model"),
    (["--tune", "2", "--model", "realnvp"], "no search space is declared for realnvp"),
    (["--tune", "2", "--prune", "median", "--criterion", "pareto"], "--prune needs one criterion"),
    (["--tune", "2", "--prune", "median"], "--set eval.snapshots=N"),
    (["--tune", "2", "--set", "train.lr=1e-3"], "fixes a knob"),
    (["--tune", "2", "--seed", str(T.SEARCH_SEED - 1)], "include the search's seed"),
    (["--criterion", "fid"], "add --tune N"),
    (["--protocol", "tune"], "holds the trials of tuning studies"),
    (["--protocol", "tune", "--tune", "2"], "trains no model of its own"),
])
def test_bad_study_input_exits_2_with_one_line(args, needle, capsys):
    try:
        code = cli.main(["--budget", "smoke", "--model", "vae", "--dry-run", *args])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_the_dry_run_shows_the_space_and_the_budget(capsys):
    assert cli.main(["--budget", "smoke", "--model", "gan", "--model", "avade", "--tune", "5", "--dry-run",
                     "--space", "gp_weight=1:10", "--space", "lc_scale=off"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tune"]["trials"] == 10 and out["tune"]["confirmation_seeds"] == [0, 1, 2]
    assert out["models"]["gan"]["space"]["gp_weight"]["distribution"] == "log-uniform [1, 10]"
    assert "lc_scale" not in out["models"]["avade"]["space"] and "adv_weight" in out["models"]["avade"]["space"]


def _patched_digits(monkeypatch, test_fill):
    """digits with its test split replaced: the trials must not see the difference."""
    import protocols.datasets as DS
    real = DS.load_dataset

    def load(name, data_root=None, download=False):
        ds = real(name, data_root, download)
        g = torch.Generator().manual_seed(5)
        x = torch.full_like(ds.test_x, 0) if test_fill == "zeros" else \
            torch.randint(0, ds.levels, ds.test_x.shape, generator=g, dtype=torch.uint8)
        return DS.ImageDataset(ds.name, ds.train_x, ds.train_y, ds.val_x, ds.val_y, x, ds.test_y, levels=ds.levels,
                               n_classes=ds.n_classes, source=ds.source)
    monkeypatch.setattr(DS, "load_dataset", load)


def _trials(path):
    return StudyRecords(ResultsStore(path)).trials()


def test_selection_never_reads_test_rows(tmp_path, monkeypatch):
    got = {}
    for fill in ("zeros", "noise"):
        _patched_digits(monkeypatch, fill)
        res = T.run_study(_spec(trials=2), results=tmp_path / fill / "r.sqlite", out=tmp_path / fill / "runs",
                          progress=False, confirm=False)
        got[fill] = ([(t["number"], t["state"], t["config_hash"], round(t["fid"], 6), round(t["bpd"], 6))
                      for t in _trials(tmp_path / fill / "r.sqlite")], res.selected["vae"]["trial"])
        rows = ResultsStore(tmp_path / fill / "r.sqlite").measurements(protocol="tune", snapshot=0)
        fid = [r for r in rows if r["metric"] == "fid"]
        assert fid and all(r["extra"]["n_real"] == 180 and r["extra"]["split"] == "validation" for r in fid)
    assert got["zeros"] == got["noise"]                  # nothing of the test split reached a trial's values


def test_the_validation_view_puts_the_validation_split_where_the_test_split_was():
    from protocols.datasets import load_dataset
    ds = load_dataset("digits")
    v = validation_view(ds)
    assert v.test_x is ds.val_x and v.train_x is ds.train_x and v.val_x is ds.val_x
    assert not torch.equal(v.test_x[:10], ds.test_x[:10])


def _pruned(results, executor=None):
    res = T.run_study(_spec(trials=2, pruner=optuna.pruners.ThresholdPruner(upper=0.0),
                            overrides={**SMOKE, "eval.snapshots": "4"}),
                      results=results, out=results.parent / "runs", progress=False, confirm=False, executor=executor)
    trials = _trials(results)
    assert [t["state"] for t in trials] == ["pruned", "pruned"] and res.selected == {}
    for t in trials:         # the pruner cut at snapshot 1 (every FID > 0); the trial stopped at snapshot 2
        assert (t["decided_at"], t["stopped_at"]) == (1, 2), t
        run_dir = Path(ResultsStore(results).runs()[0]["run_dir"]).parent / f"seed{T.SEARCH_SEED}-{t['config_hash']}"
        assert len(json.loads((run_dir / "snapshots.json").read_text())) == 1
        assert json.loads((run_dir / TRIAL_FILE).read_text())["state"] == "pruned"
        assert json.loads((run_dir / PRUNE_FILE).read_text())["stop"] is True
    return trials


def test_a_pruned_trial_stops_within_one_snapshot_on_the_local_executor(tmp_path):
    _pruned(tmp_path / "r.sqlite")


@pytest.mark.executors
def test_a_pruned_trial_stops_within_one_snapshot_through_submitit(tmp_path):
    pytest.importorskip("submitit", reason='pip install -e ".[slurm]"')
    from protocols.executors import ExecutorOptions
    _pruned(tmp_path / "r.sqlite", ExecutorOptions("submitit", submitit_cluster="local", workers=2, poll_s=0.3))


def test_a_diverged_trial_is_recorded_as_such_and_the_study_goes_on(tmp_path):
    res = T.run_study(_spec(trials=2, space=["lr=1e3:1e4"]), results=tmp_path / "r.sqlite", out=tmp_path / "runs",
                      progress=False, confirm=False)
    trials = _trials(tmp_path / "r.sqlite")
    assert [t["state"] for t in trials] == ["diverged", "diverged"] and res.selected == {}
    assert all("is nan" in t["error"] or "is inf" in t["error"] for t in trials), trials


def test_a_verdict_says_how_its_sides_were_tuned():
    study = {"how": "study", "study": "s1", "trials": 12, "criterion": "fid", "sampler": "random",
             "pruner": "none", "seed": 0}
    ev = {"comparisons": [{"better": "avade", "worse": "gan"}, {"better": "avade", "worse": "vae"},
                          {"better": "real", "worse": "gan"}]}
    alike = tuning_evidence(ev, {"avade": study, "gan": {**study, "study": "s2"}, "vae": {**study, "study": "s3"}})
    assert alike["tuned_alike"] and set(alike["tuning"]) == {"avade", "gan", "vae"} and "tuning_note" not in alike
    unequal = tuning_evidence(ev, {"avade": study, "gan": study})
    assert not unequal["tuned_alike"] and unequal["tuning"]["vae"] == {"how": "preset"}
    assert "tuned unequally" in unequal["tuning_note"] and "vae at its presets" in unequal["tuning_note"]
    fewer = tuning_evidence(ev, {"avade": study, "gan": {**study, "trials": 4}, "vae": study})
    assert not fewer["tuned_alike"]


def test_the_pareto_selection_takes_the_front_trial_nearest_the_ideal_point():
    done = [(0, {}, [10.0, 3.0]), (1, {}, [5.0, 5.0]), (2, {}, [2.0, 9.0]), (3, {}, [6.0, 6.0])]
    assert T.pareto_front([(n, *v) for n, _, v in done]) == [0, 1, 2]
    assert T._choose(done, "pareto") == 1 and T._choose(done, "fid") == 2


def test_local_workers_split_the_threads_and_store_what_one_cell_after_another_stores(tmp_path):
    from protocols.api import run_protocol
    from protocols.executors import ExecutorOptions, local_threads
    split = local_threads(ExecutorOptions("local", workers=2), [])
    assert [(o.key, o.value) for o in split] == [("train.threads", max(1, (len(os.sched_getaffinity(0))) // 2))]
    grid = dict(models=["vae"], budget="smoke", seeds=1, progress=False,
                overrides={"train.threads": "1", "eval.n_samples": "60"})
    one = run_protocol("ablation", results=tmp_path / "a.sqlite", out=tmp_path / "a", **grid)
    two = run_protocol("ablation", results=tmp_path / "b.sqlite", out=tmp_path / "b",
                       executor=ExecutorOptions("local", workers=2, poll_s=0.2), **grid)
    assert {c.status for c in one.cells} == {c.status for c in two.cells} == {"done"}
    key = lambda r: (r["model"], r["seed"], r["metric"], r["snapshot"])  # noqa: E731
    a = {key(r): r for r in ResultsStore(tmp_path / "a.sqlite").measurements() if r["metric"] != "samples_per_s"}
    b = {key(r): r for r in ResultsStore(tmp_path / "b.sqlite").measurements() if r["metric"] != "samples_per_s"}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["cell_key"] == b[k]["cell_key"]
        if k[2] != "speed_vs_gan":
            assert a[k]["value"] == pytest.approx(b[k]["value"], rel=1e-6, abs=1e-9), k


def test_the_page_shows_each_study_and_keeps_its_trials_out_of_the_tables(tmp_path):
    from common.store import Measurement
    from leaderboard.build import build
    from leaderboard.studies import expected_best
    store = ResultsStore(tmp_path / "r.sqlite")
    rec = StudyRecords(store)
    for model in ("gan", "avade"):
        sid = f"ablation.{model}.x"
        rec.put_study(study_id=sid, tuning_id="t1", protocol="ablation", dataset="digits", budget="cpu", model=model,
                      criterion="fid", sampler="random", pruner="median", seed=0, search_seed=T.SEARCH_SEED,
                      n_trials=3, space={"lr": {"key": "train.lr", "distribution": "log-uniform [0.0001, 0.01]"}},
                      base_hash="b")
        for n, (state, fid, bpd) in enumerate([("complete", 3.0, 4.0), ("complete", 2.0, 5.0), ("pruned", None, None)]):
            rec.put_trial(sid, n, model=model, state=state, params={"lr": 1e-3 * (n + 1)}, fid=fid, bpd=bpd,
                          value=fid, decided_at=2 if state == "pruned" else None, stopped_at=3 if fid is None else None)
        rec.select(sid, 1, {"lr": 2e-3}, "cfg1", [0, 1])
    store.add([Measurement("tune:r", "gan", "tune", "digits", "cpu", T.SEARCH_SEED, "fid", 2.0, extractor="domain",
                           config_hash="cfg1", group_key="g", cell_key="c")])
    study = {"how": "study", "study": "ablation.gan.x", "trials": 3, "criterion": "fid", "sampler": "random",
             "pruner": "median", "seed": 0, "space": {"lr": "log-uniform"}, "selected_trial": 1}
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="avade-best-of-both",
                    text="AV-ADE beats GAN on FID", status="inconclusive",
                    evidence={"comparisons": [{"better": "avade", "worse": "gan", "metric": "fid"}],
                              **tuning_evidence({"comparisons": [{"better": "avade", "worse": "gan"}]}, {"gan": study})},
                    configs={"gan": "cfg1", "avade": "p"})
    html = Path(build(tmp_path / "r.sqlite", tmp_path / "site")).read_text()
    assert 'id="studies"' in html and "ablation.gan.x" in html and "at snapshot 2, stopped at 3" in html
    assert "TUNED UNEQUALLY" in html and "tuned unequally: avade at its presets" in html
    assert len(list((tmp_path / "site" / "img").glob("study-*.png"))) == 3
    assert 'id="ds-digits' not in html             # the trial's row is no table of the digits section
    best = expected_best([3.0, 2.0, float("inf")], draws=200)
    assert [k for k, *_ in best] == [1, 2, 3] and best[-1][1] == 2.0 and best[0][2] == 2.0


@pytest.mark.slow
def test_a_killed_study_resumes_without_running_a_trial_twice(tmp_path):
    """kill -9 of the driver while a trial trains; the rerun asks nothing twice and continues the running trial."""
    cmd = [sys.executable, "-m", "protocols.run", "--model", "vae", "--budget", "smoke", "--tune", "3",
           "--no-confirm", "--no-leaderboard", "--no-progress", "--results", str(tmp_path / "r.sqlite"),
           "--out", str(tmp_path / "runs"), "--set", "train.threads=1", "--set", "train.steps=300",
           "--set", "eval.n_samples=60", "--set", "train.ckpt_every=20"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = [t["state"] for t in _trials(tmp_path / "r.sqlite")] if (tmp_path / "r.sqlite").exists() \
                else []
            if states.count("complete") == 1 and "running" in states:
                break
            time.sleep(0.2)
        time.sleep(1.0)                              # into the second trial's training
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True).returncode == 0
    trials = _trials(tmp_path / "r.sqlite")
    assert [t["number"] for t in trials] == [0, 1, 2] and {t["state"] for t in trials} == {"complete"}
    journal = next((tmp_path / "r.sqlite.studies").glob("*.optuna.jsonl"))
    storage = T.open_storage(journal)
    assert len(optuna.load_study(study_name=trials[0]["study_id"], storage=storage).trials) == 3
    starts = {t["number"]: json.loads((tmp_path / "runs" / "digits" / "tune" / "vae" /
                                       f"seed{T.SEARCH_SEED}-{t['config_hash']}" / "attempts.json").read_text())
              for t in trials}
    assert len(starts[0]) == 1                       # finished before the kill: never trained again
    assert all(a["resume"] for a in starts[1][1:])   # the interrupted one continued from its checkpoint
