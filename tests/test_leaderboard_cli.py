"""``python -m leaderboard.build`` as a user runs it: no torch imported, and every bad input (a file that is not a
store, a folder, a missing store, a store on a read-only disk, an --out that is a file or cannot be written) is
either built or one line on stderr with exit code 2 (common.cli.run_main)."""
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from metrics import keys
from common.store import Measurement, ResultsStore

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _cli(*args, cwd=None, prefix=()):
    cmd = [*prefix, sys.executable, "-m", "leaderboard.build", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=cwd or ROOT, timeout=300)


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _store(path: Path, n: int = 3) -> Path:
    store = ResultsStore(path)
    for s in range(n):
        store.add([Measurement(f"r{s}", "gan", "ablation", "digits", "cpu", s, keys.FID, 10.0 + s, "domain", 500,
                               config_hash="cfg", group_key="g", cell_key=f"g{s}", extractor_id="e")])
    return path


def _rows_on_page(index: Path) -> int:
    return int(re.search(r'data-measurements="(\d+)"', index.read_text()).group(1))


# ---- no torch ---------------------------------------------------------------------------------------------
def test_importing_the_builder_loads_no_torch():
    code = "import leaderboard.build, sys; print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_help_imports_no_torch_and_no_matplotlib():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "leaderboard.build", "--help"], capture_output=True,
                       text=True, env=ENV, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "--results" in r.stdout, r.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}
    assert "matplotlib" not in imported          # drawn figures import it on first use


# ---- bad input ----------------------------------------------------------------------------------------------
def test_results_not_sqlite(tmp_path):
    bad = tmp_path / "results.sqlite"
    bad.write_text("these are not the results you are looking for\n" * 50)
    _one_line_error(_cli("--results", bad, "--site", tmp_path / "site"), str(bad), "not a database")


def test_results_sqlite_but_not_a_store(tmp_path):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    _one_line_error(_cli("--results", other, "--site", tmp_path / "site"), str(other))


def test_results_is_a_folder(tmp_path):
    _one_line_error(_cli("--results", tmp_path, "--site", tmp_path / "site"), str(tmp_path), "is a folder",
                    "--results")


def test_results_missing_builds_a_page_saying_so(tmp_path):
    missing = tmp_path / "nowhere" / "results.sqlite"
    r = _cli("--results", missing, "--site", tmp_path / "site")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [f"note: no results store at {missing} yet; wrote a page saying so"]
    assert r.stdout.strip() == str(tmp_path / "site" / "index.html")
    assert "No results yet" in (tmp_path / "site" / "index.html").read_text()
    assert not missing.exists() and not missing.parent.exists()


def test_out_is_a_file(tmp_path):
    results, out = _store(tmp_path / "r.sqlite"), tmp_path / "site"
    out.write_text("a file")
    _one_line_error(_cli("--results", results, "--site", out), str(out), "is a file", "--site")
    assert out.read_text() == "a file"


def test_out_below_a_file(tmp_path):
    results, blocker = _store(tmp_path / "r.sqlite"), tmp_path / "blocker"
    blocker.write_text("x")
    _one_line_error(_cli("--results", results, "--site", blocker / "site"), "--site")


# ---- read-only disks (a read-only bind mount in a user namespace; skipped where that is not allowed) ----------
def _read_only(folder: Path):
    """A command prefix that runs the command with ``folder`` mounted read-only, or None if unavailable."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    prefix = (unshare, "-r", "-m", "sh", "-c", script, str(folder))
    probe = subprocess.run([*prefix, "sh", "-c", f'touch "{folder}/probe" 2>/dev/null && echo writable || echo ro'],
                           capture_output=True, text=True, timeout=30)
    return prefix if probe.stdout.strip() == "ro" else None


def test_store_in_a_read_only_folder_builds(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    results = _store(data / "results.sqlite", n=4)
    prefix = _read_only(data)
    if prefix is None:
        pytest.skip("cannot mount a read-only folder here (no unshare or user namespaces)")
    before = sorted(p.name for p in data.iterdir())
    r = _cli("--results", results, "--site", tmp_path / "site", prefix=prefix)
    assert r.returncode == 0, r.stderr
    assert _rows_on_page(tmp_path / "site" / "index.html") == 4
    assert sorted(p.name for p in data.iterdir()) == before


def test_out_on_a_read_only_disk(tmp_path):
    results = _store(tmp_path / "r.sqlite")
    out = tmp_path / "ro"
    out.mkdir()
    prefix = _read_only(out)
    if prefix is None:
        pytest.skip("cannot mount a read-only folder here (no unshare or user namespaces)")
    _one_line_error(_cli("--results", results, "--site", out / "site", prefix=prefix), "--site", "Read-only")
    _one_line_error(_cli("--results", results, "--site", out, prefix=prefix), "--site", "Read-only")
