"""The metrics package is lazy: its key constants load without torch (the leaderboard builds without it)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_keys_import_no_torch():
    code = ("import sys, json, metrics.keys, metrics\n"
            "from metrics import keys\nfrom metrics.keys import DIRECTION\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))")
    assert json.loads(_run(code)) == []


def test_every_exported_name_resolves_and_functions_stay_functions():
    code = ("import metrics.gan_train_test as submodule_first, metrics, inspect\n"
            "missing = [n for n in metrics.__all__ if getattr(metrics, n, None) is None]\n"
            "assert not missing, missing\n"
            "assert inspect.isfunction(metrics.gan_train_test) and metrics.gan_train_test is submodule_first\n"
            "assert 'fid' in metrics.METRICS and callable(metrics.load_extractor) and metrics.keys.FID == 'fid'\n"
            "print('ok')")
    assert _run(code).strip() == "ok"
