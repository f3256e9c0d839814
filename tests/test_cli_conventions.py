"""One set of CLI conventions (common/defaults.py): the same flag means the same thing in every command, every
command reads the same environment variables, and the old flag names still work for a release with a note."""
from __future__ import annotations

import re

import pytest

from common import defaults
from common.store import Measurement, ResultsStore
from metrics import keys


def _help(main, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def _clis():
    from leaderboard.build import main as board
    from metrics.cli import main as metrics_cli
    from protocols.run import main as run
    return {"protocols.run": run, "leaderboard.build": board, "metrics": metrics_cli}


def test_every_cli_gives_a_shared_flag_the_same_meaning(capsys):
    helps = {name: _help(main, capsys) for name, main in _clis().items()}
    for flag, text in defaults.HELP.items():
        having = [name for name, h in helps.items() if re.search(rf"{flag} [A-Z_]+ ", h)]
        for name in having:
            assert " ".join(text.split()) in helps[name], (name, flag)
    assert all("--runs" not in h or "run directories" in h for h in helps.values())
    assert "--site SITE" in helps["protocols.run"] and "--site SITE" in helps["leaderboard.build"]
    assert "--runs RUNS" in helps["protocols.run"]
    assert not any(re.search(r"--out [A-Z]", h) for h in helps.values())     # the old, two-meaning name is hidden


def test_without_flags_the_page_is_built_from_the_store_a_run_writes(tmp_path, monkeypatch, capsys):
    from leaderboard.build import main as board
    from protocols.api import default_results, default_site
    monkeypatch.setenv(defaults.RESULTS_ENV, str(tmp_path / "store.sqlite"))
    monkeypatch.setenv(defaults.SITE_ENV, str(tmp_path / "page"))
    monkeypatch.chdir(tmp_path)
    assert default_results() == tmp_path / "store.sqlite" and default_site() == tmp_path / "page"   # what a run uses
    ResultsStore(default_results()).add([Measurement("r0", "gan", "ablation", "digits", "cpu", 0, keys.FID, 1.5,
                                                     "domain", 500, config_hash="c0")])
    assert board([]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "page" / "index.html") and "no results store" not in err
    assert "gan" in (tmp_path / "page" / "index.html").read_text()


@pytest.mark.parametrize("cli, new", [("protocols.run", "--runs"), ("leaderboard.build", "--site")])
def test_an_old_flag_works_for_a_release_with_a_one_line_note(cli, new, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main = _clis()[cli]
    args = ["--dry-run", "--budget", "smoke", "--model", "vae"] if cli == "protocols.run" else ["--results", "r.sqlite"]
    assert main(args + ["--out", str(tmp_path / "there")]) == 0
    err = capsys.readouterr().err
    assert f"note: --out is deprecated and goes in the next release; use {new}" in err
    if cli == "leaderboard.build":
        assert (tmp_path / "there" / "index.html").is_file()


def test_list_prints_every_models_steps_batch_and_sizes_with_their_sources(capsys):
    from models import MODELS
    from protocols.config import resolve
    from protocols.run import main as run
    assert run(["--list", "--budget", "cpu", "--dataset", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("budget cpu, dataset fashion-mnist"):].splitlines()[1:]
    rows = {line.split()[0]: line for line in table}
    assert set(rows) == set(MODELS.names())
    cfg = resolve("avade", dataset="fashion-mnist", budget="cpu", machine=False)
    assert (f"steps {cfg.train.steps} (preset avade@32 (cpu)), batch {cfg.train.batch_size} (preset avade@32 (cpu))"
            in rows["avade"])
    assert f"width={cfg.model_cfg.width} " in rows["avade"] and "(preset avade (cpu))" in rows["avade"]
    assert "disc_width=16 (preset avade-rd@32 (cpu))" in rows["avade-rd"]        # the rd rule of models/presets.py
    assert run(["--list", "--budget", "paper", "--dataset", "cifar10", "--model", "gan"]) == 0
    (row,) = capsys.readouterr().out.split("budget paper, dataset cifar10")[1].splitlines()[1:]
    assert row.startswith("gan ") and "steps 200000 (budget paper)" in row and "width=64" in row
    assert "(default of GANConfig)" in row                                        # the paper's sizes: the defaults
