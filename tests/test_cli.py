"""The CLI: registries listed, bad input is one line on stderr with exit code 2, dry runs write nothing."""
import json
import os
import subprocess
import sys

import pytest

from protocols.run import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "protocols.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_list_shows_every_registry(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for section in ("models:", "protocols:", "datasets:", "metrics:"):
        assert section in out
    for name in ("avade", "gan", "vae", "ablation", "gan_train_test", "digits", "cifar10", "folder:PATH", "fid"):
        assert name in out


@pytest.mark.parametrize("args, needle", [
    (["--model", "nosuch"], "unknown model 'nosuch'"),
    (["--protocol", "nosuch"], "unknown protocol 'nosuch'"),
    (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    (["--budget", "huge"], "unknown budget 'huge'"),
    (["--set", "train.steps=ten"], "bad value for train.steps"),
    (["--set", "train.nosuch=1"], "unknown config key 'train.nosuch'"),
    (["--set", "nonsense"], "key=value"),
    (["--set", "model.lambda_adv=10"], "unknown config key 'model.lambda_adv'"),
    (["--set", "train.steps=0"], "train.steps=0 must be >= 1"),
    (["--seeds", "x"], "invalid int value"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    r = _cli(*args, "--dry-run", "--results", str(tmp_path / "r.sqlite"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_dry_run_prints_plan_and_writes_nothing(tmp_path):
    r = _cli("--protocol", "ablation", "--seeds", "2", "--set", "train.steps=7", "--set", "avade.adv_weight=10",
             "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [c["model"] for c in plan["cells"]][:2] == ["gan", "gan"] and len(plan["cells"]) == 12
    assert [c["model"] for c in plan["cells"]][-2:] == ["real", "real"]      # the real-data floor row
    assert all(c["config"]["train"]["steps"] == 7 for c in plan["cells"])
    assert all(c["sources"]["train.steps"] == "--set train.steps" for c in plan["cells"])
    assert plan["overrides_reached"] == {"train.steps": ["avade", "avgde", "gan", "real", "vade", "vae"],
                                         "avade.adv_weight": ["avade"]}
    assert plan["table"] == "Table 1" and plan["claims"]
    assert list(tmp_path.iterdir()) == []


def test_paper_dry_run_bounds_every_stage(capsys):
    assert main(["--protocol", "ablation", "--budget", "paper", "--dataset", "cifar10", "--set", "train.steps=3",
                 "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    stages = [s for c in plan["cells"] if c["model"] != "real" for s in c["stages"]]
    assert {s["stage"] for s in stages} == {"adversarial", "inference", "main"}
    assert all(s["steps"] == 3 for s in stages)


def test_debug_shows_traceback(tmp_path):
    r = _cli("--model", "nosuch", "--dry-run", "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_missing_inception_weights_fail_before_any_training(tmp_path):
    env_free = tmp_path / "none.pth"
    r = _cli("--protocol", "ablation", "--model", "vae", "--budget", "paper", "--inception-weights", str(env_free),
             "--results", str(tmp_path / "r.sqlite"), "--runs", str(tmp_path / "runs"), cwd=tmp_path)
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "Inception weights not found" in line and "pt_inception-2015-12-05" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("preset, expected", [({}, "None 1000"), ({"OMP_WAIT_POLICY": "PASSIVE"}, "PASSIVE None"),
                                              ({"GOMP_SPINCOUNT": "300000"}, "None 300000")])
def test_cli_limits_openmp_spinning_unless_told_otherwise(tmp_path, preset, expected):
    """Concurrent runs must not collapse (benchmarks/README.md): the CLI sets GOMP_SPINCOUNT=1000 before torch
    loads, unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set (an explicit choice wins)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = ROOT
    env.update(preset)
    code = ("import os, sys; from protocols.run import main; rc = main(['--list']); "
            "print('policy', os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), "
            "'torch', 'torch' in sys.modules); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == f"policy {expected} torch True"


def test_resume_and_fresh_together_are_refused_with_exit_2(capsys):
    from protocols.run import main
    with pytest.raises(SystemExit) as e:
        main(["--resume", "--fresh", "--dry-run"])
    assert e.value.code == 2 and "pass one of them" in capsys.readouterr().err


def test_executor_options_are_checked_and_a_missing_engine_names_its_extra(monkeypatch, capsys):
    import sys as _sys

    from protocols.run import main
    assert main(["--executor", "dask", "--budget", "smoke"]) == 2
    assert "unknown executor 'dask'; valid executors: local, submitit, ray" in capsys.readouterr().err
    assert main(["--cpus-per-cell", "4", "--budget", "smoke"]) == 2
    assert "options of --executor submitit or ray" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:         # a number out of range: refused while parsing
        main(["--executor", "ray", "--cpus-per-cell", "0", "--budget", "smoke"])
    assert e.value.code == 2 and "--cpus-per-cell: must be a number >= 1, not 0" in capsys.readouterr().err
    assert main(["--executor", "submitit", "--ray-address", "x:1", "--budget", "smoke"]) == 2
    assert "--ray-address is an option of --executor ray" in capsys.readouterr().err
    from protocols.executors import import_engine
    monkeypatch.setitem(_sys.modules, "ray", None)          # as if the extra were not installed
    with pytest.raises(ValueError, match=r'pip install -e "\.\[ray\]"'):
        import_engine("ray")
