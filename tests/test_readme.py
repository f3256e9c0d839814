"""Every command the README shows runs, so the README cannot rot: protocol runs as dry runs (which resolve and
check every cell), the leaderboard and the metrics CLI for real on files made here, tox envs by what they call.

The two set-up commands are the exception by nature: the test command is what CI itself runs (``.ci/run`` must
call it verbatim), and the main job is checked here as a dry run and run at the smoke budget by the end-to-end tests.
"""
from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEST_COMMAND = 'pip install -e ".[test]" && python -m pytest'
SKIP = ("pip install", "python -m venv", ". .venv/bin/activate", "python -m pytest")   # installs, CI's own command


def readme_commands() -> list:
    text = README.read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.split(r"\s#\s", line)[0].strip()
            if line and not line.startswith("#"):
                found.append(line)
    found += [s for s in re.findall(r"`([^`\n]+)`", text) if s.startswith(("python -m", "tox -e", "torchrun"))]
    parts = [p.strip() for cmd in found for p in cmd.split("&&")]
    # a command with a <placeholder> is a template for the reader's own names, not a command to run
    return list(dict.fromkeys(p for p in parts if not p.startswith(SKIP) and "<" not in p))


def test_ci_runs_the_readme_test_command():
    assert TEST_COMMAND in README.read_text()
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text()


def test_the_readme_shows_commands_of_every_kind():
    cmds = readme_commands()
    for prefix in ("python -m protocols.run", "python -m leaderboard.build", "python -m metrics", "tox -e",
                   "torchrun"):
        assert any(c.startswith(prefix) for c in cmds), prefix


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The files the README's metrics examples name, in their real formats."""
    from test_metrics_inception import _pytorch_fid_reference
    d = tmp_path_factory.mktemp("readme")
    rng = np.random.default_rng(0)
    for folder in ("samples", "real"):
        (d / folder).mkdir()
        for i in range(24):        # PRD clusters into 20 bins
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / folder / f"{i}.png")
    torch.manual_seed(0)
    torch.save(_pytorch_fid_reference().state_dict(), d / "W.pth")
    x = lambda n: rng.integers(0, 17, (n, 1, 8, 8), dtype=np.uint8)  # noqa: E731
    np.savez(d / "fake.npz", x=x(60))
    np.savez(d / "test.npz", x=x(60))
    np.savez(d / "train.npz", x=x(300), y=rng.integers(0, 10, 300))
    return d


def _tox_commands(env: str) -> list:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    section = f"testenv:{env}"
    assert ini.has_section(section), f"tox.ini has no [{section}]"
    lines = [l.strip() for l in ini.get(section, "commands").splitlines() if l.strip()]
    return [re.sub(r"^\S*python ", "python ", l).replace("{posargs}", "").strip() for l in lines]


def _run(cmd: str, files: Path, monkeypatch, capsys) -> None:
    argv = shlex.split(cmd)
    if argv[0] == "tox":
        for line in _tox_commands(argv[2]):
            if "protocols.run" in line:
                _run(line, files, monkeypatch, capsys)
        return
    if argv[0] == "torchrun":
        argv = ["python", *argv[argv.index("-m"):]]
    assert argv[:2] == ["python", "-m"], cmd
    module, args = argv[2], argv[3:]
    monkeypatch.chdir(files)
    if module == "protocols.run":
        from protocols.run import main
        rc = main(args + ([] if "--dry-run" in args else ["--dry-run"]))
    elif module == "leaderboard.build":
        from leaderboard.build import main
        rc = main(args)
    elif module == "metrics":
        from metrics.cli import main
        rc = main(args)
    else:
        raise AssertionError(f"the README shows a command this test does not know how to run: {cmd}")
    out, err = capsys.readouterr()
    assert rc == 0, (cmd, err[-2000:])


@pytest.mark.parametrize("cmd", readme_commands())
def test_readme_command_runs(cmd, files, monkeypatch, capsys):
    monkeypatch.delenv("AVADE_INCEPTION", raising=False)
    threads = torch.get_num_threads()
    try:
        _run(cmd, files, monkeypatch, capsys)
    finally:
        torch.set_num_threads(threads)
