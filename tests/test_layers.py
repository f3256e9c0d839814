"""The layers stay layered (docs/design.md "Layout"): no package imports from a package above it, the
page builds without torch, and the Python API has every registry without the CLI."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package -> the suite's packages (or modules) it may import
ALLOWED = {
    "common": set(),
    "models": {"common"},
    "metrics": {"common", "models"},
    "protocols": {"common", "models", "metrics"},
    "leaderboard": {"common", "metrics.keys"},
}
OURS = set(ALLOWED)
#: the command line is the shell above every layer: it may call the leaderboard after a run
SHELLS = {"protocols/run.py": {"leaderboard"}}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(ROOT).parts[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            for a in node.names:          # "from metrics import keys" imports metrics.keys
                yield f"{node.module}.{a.name}", node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            yield pkg, node.lineno


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_reaches_up(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        shell = SHELLS.get(str(path.relative_to(ROOT)), set())
        for name, line in _imports(path):
            top = name.split(".")[0]
            if top not in OURS or top == package or top in shell:
                continue
            if not any(name == a or name.startswith(a + ".") or a.startswith(name + ".") and a.split(".")[0] == name
                       for a in ALLOWED[package]) and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def _fresh(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_page_and_the_store_import_no_torch():
    code = ("import sys, leaderboard.build, common.store, metrics.keys, common.cli\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])")
    assert _fresh(code) == "[]"


def test_the_python_api_has_every_registry_without_the_cli():
    code = ("import protocols.api as a, sys\n"
            "from models import MODELS\nimport metrics\n"
            "print(len(a.PROTOCOLS), 'protocols.run' in sys.modules, 'ablation' in a.PROTOCOLS, "
            "'avade' in MODELS, 'fid' in metrics.METRICS)")
    n, cli, *rest = _fresh(code).split()
    assert int(n) >= 8 and cli == "False" and rest == ["True", "True", "True"]
