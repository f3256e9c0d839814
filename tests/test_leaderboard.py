"""Leaderboard site: tables never mix datasets/extractors (or extractor identities)/budgets/sample counts,
never pool configurations, mean ± std over the seeds of one configuration, checkpoints and extractor accuracy,
paper and modern reference rows, claims per configuration set, escaping of hostile names, empty and legacy
stores, relative images, the cost channel of the scatter, well-formed HTML."""
import json
import statistics
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leaderboard import build as lb
from leaderboard.paper_numbers import PAPER_ROWS, PAPER_TABLES
from leaderboard.tables import aggregate, group_tables
from metrics import keys
from common.store import Measurement, ResultsStore

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_ATTR = '"><img src=x onerror=alert(1)>'
MODELS = ("gan", "vae", XSS_SCRIPT, XSS_ATTR)
# digits / domain / cpu / 5000 FID per model and seed
FID = {m: [10.0 + 7 * i + s * (i + 1) for s in range(3)] for i, m in enumerate(MODELS)}
CFG = "cfg1a2b3c4d5e"                       # one (seed-free) configuration per model in the main fixture
EXT_ID = {"domain": "dom0a1b2c3d4e5f6", "inception": "inc0a1b2c3d4e5f6"}
ACCURACY = 97.25                             # the domain net's held-out accuracy (%) as the protocols record it
CKPT = "last (step 400)"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _png(path: Path) -> None:
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))   # distinct bytes per file
    Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(path)


def gkey(dataset, budget, model, cfg=CFG, protocol="ablation"):
    return f"g:{protocol}:{dataset}:{budget}:{model}:{cfg}"


def _run(store, root, rid, model, dataset, seed, status="done", files=("samples", "recon", "curve"), cfg=CFG,
         config=None, checkpoint=CKPT, budget="cpu"):
    rd = root / "runs" / rid
    rd.mkdir(parents=True)
    if "samples" in files:
        _png(rd / "samples.png")
    if "recon" in files:
        _png(rd / "reconstructions.png")
    if "curve" in files:
        t = np.linspace(0, 1, 11)
        (rd / "prd_curve.json").write_text(json.dumps({"precision": list(1 - t ** 2), "recall": list(t)}))
    if "prd_png" in files:
        _png(rd / "prd.png")
    g = gkey(dataset, budget, model, cfg)
    store.start_run(rid, model=model, protocol="ablation", dataset=dataset, budget=budget, seed=seed,
                    run_dir=str(rd), config=config or {"model": model, "train": {"steps": 400}}, config_hash=cfg,
                    code_version="0.1.0+gabc", group_key=g, cell_key=f"{g}:s{seed}")
    if status == "done":
        store.commit_cell(rid, [], checkpoint=checkpoint)
    else:
        store.finish_run(rid, status)
    return rd


def _measure(store, rid, model, dataset, seed, metric, value, extractor, n, budget="cpu", cfg=CFG,
             checkpoint=CKPT, ext_id=None, extra=None):
    g = gkey(dataset, budget, model, cfg)
    info = {"checkpoint": checkpoint, **({"extractor_accuracy": ACCURACY} if extractor == "domain" else {}),
            **(extra or {})}
    store.add([Measurement(rid, model, "ablation", dataset, budget, seed, metric, value, extractor, n,
                           config_hash=cfg, code_version="0.1.0+gabc", extra=info, group_key=g,
                           cell_key=f"{g}:s{seed}",
                           extractor_id=(EXT_ID.get(extractor, "") if ext_id is None else ext_id) if extractor
                           else "")])


def make_store(root: Path) -> Path:
    """Two datasets, two extractors on digits, a budget and a sample-count split, claims, run dirs."""
    store = ResultsStore(root / "results.sqlite")
    for i, model in enumerate(MODELS):
        seeds = range(3) if i < 3 else range(1)   # the last model has a single seed
        for s in seeds:
            rid = f"d-{i}-{s}"
            _run(store, root, rid, model, "digits", s)
            _measure(store, rid, model, "digits", s, keys.BPD, 2.0 + 0.1 * i + 0.01 * s, "", 360)
            stale = 500.0 if (i, s) == (0, 0) else FID[model][s]   # gan seed 0 is rerun below
            _measure(store, rid, model, "digits", s, keys.FID, stale, "domain", 5000)
            _measure(store, rid, model, "digits", s, keys.IS, 9.0 - 0.1 * i, "domain", 5000)
            _measure(store, rid, model, "digits", s, keys.PRD_AUC, 0.5, "domain", 5000)
            _measure(store, rid, model, "digits", s, keys.FID, 100.0 + i, "inception", 5000)
            _measure(store, rid, model, "digits", s, keys.FID, 50.0 + i, "domain", 1000)
            _measure(store, rid + "c", model, "cifar10", s, keys.BPD, 4.0 + i, "", 10000)
            _measure(store, rid + "c", model, "cifar10", s, keys.FID, 40.0 + i, "inception", 10000)
    _measure(store, "d-0-0", "gan", "digits", 0, keys.FID, 999.0, "domain", 5000, budget="smoke")
    # a rerun of seed 0 of gan: its newest value replaces the old one
    _measure(store, "d-0-0b", "gan", "digits", 0, keys.FID, FID["gan"][0], "domain", 5000)
    _run(store, root, "new-gan", "gan", "digits", 7, files=("samples",))   # the newest finished gan run
    _run(store, root, "failed-vae", "vae", "digits", 9, status="failed")
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", extractor="domain", claim_id="gan-vs-vae",
                    text=f"GAN beats VAE on FID {XSS_SCRIPT}", status="reproduced",
                    evidence={"gan": {"fid": 12.0}, XSS_ATTR: [1.5, 2.5]})
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="bpd", text="ADE helps BPD",
                    status="inconclusive", evidence={"delta": 0.01})
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="bpd", text="ADE helps BPD",
                    status="not reproduced", evidence={"delta": -0.3})
    return root / "results.sqlite"


class Page(HTMLParser):
    """Collects tables (caption, headers, rows of cells with attributes), images, scripts; checks nesting."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tables, self.imgs, self.scripts, self.text = [], [], [], [], [], []
        self._caption, self._cell, self._in_script, self._last_caption = None, None, False, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "figcaption":
            self._caption = ""
        elif tag == "table" and "sortable" in (a.get("class") or ""):
            self.tables.append({"caption": self._last_caption, "rows": []})
        elif tag == "tr" and self.tables and self._depth("table") == 1:
            self.tables[-1]["rows"].append({"cls": a.get("class"), "cells": []})
        elif tag in ("td", "th") and self.tables and self._depth("table") == 1:
            self._cell = {"text": "", **a}
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")

    def _depth(self, tag):
        return self.stack.count(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()
        if tag == "figcaption" and self._caption is not None:
            self._last_caption, self._caption = self._caption.strip(), None
        elif tag in ("td", "th") and self._cell is not None and self._depth("table") == 1:
            self.tables[-1]["rows"][-1]["cells"].append(self._cell)
            self._cell = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data):
        self.text.append(data)
        if self._caption is not None:
            self._caption += data
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_script:
            self.scripts[-1] += data


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    assert not p.errors, p.errors[:5]
    assert p.stack == [], f"unclosed tags: {p.stack}"
    for t in p.tables:   # the first row is the header row
        t["headers"] = [c["text"].strip() for c in t["rows"][0]["cells"]]
        t["rows"] = t["rows"][1:]
    return p


def table_by_caption(page: Page, *words: str) -> dict:
    found = [t for t in page.tables if all(w in t["caption"] for w in words)]
    assert len(found) == 1, [t["caption"] for t in page.tables]
    return found[0]


def column(table: dict, header_prefix: str) -> int:
    return next(i for i, h in enumerate(table["headers"]) if h.startswith(header_prefix))


def measured_rows(table: dict, model: str) -> list:
    col = table["headers"].index("Model")
    return [r for r in table["rows"] if r["cls"] == "measured" and r["cells"][col]["text"].strip() == model]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    results = make_store(root)
    index = lb.build(results, root / "site")
    html = index.read_text(encoding="utf-8")
    return {"root": root, "index": index, "html": html, "page": parse(html), "results": results}


def test_build_returns_index_and_page_is_well_formed(site):
    assert site["index"] == site["root"] / "site" / "index.html"
    assert site["html"].startswith("<!DOCTYPE html>")
    assert site["page"].tables, "no tables rendered"


def test_grouping_never_mixes_dataset_extractor_budget_or_sample_count(site):
    store = ResultsStore(site["results"])
    tables = group_tables(aggregate(store.measurements()))
    keys_seen = [t.key for t in tables]
    assert len(keys_seen) == len(set(keys_seen))
    dom, inc = EXT_ID["domain"], EXT_ID["inception"]
    assert {k for k in keys_seen} == {("cifar10", "inception", inc, "cpu", 10000),
                                      ("digits", "domain", dom, "cpu", 5000), ("digits", "domain", dom, "cpu", 1000),
                                      ("digits", "domain", dom, "smoke", 5000),
                                      ("digits", "inception", inc, "cpu", 5000)}
    for t in tables:
        for row in t.rows:
            for col, c in row.cells.items():
                assert (c.dataset, c.budget) == (t.dataset, t.budget)
                assert c.group == row.group           # one row is one configuration, never pooled
                if c.extractor:
                    assert (c.extractor, c.n_samples) == (t.extractor, t.n_samples) == (col.extractor, col.n_samples)
                    assert c.extractor_id == t.extractor_id
    # BPD (extractor-independent) is shown alongside in every cpu table of its dataset
    for t in tables:
        has_bpd = any(c.metric == keys.BPD for c in t.columns)
        assert has_bpd == (t.budget == "cpu"), t.key
    # the HTML has one table per key, with the key in its caption
    measured = [t for t in site["page"].tables if "extractor" in t["caption"]]
    assert len(measured) == len(tables)
    table_by_caption(site["page"], "digits", "extractor domain", "budget cpu", "5000 generated")
    table_by_caption(site["page"], "digits", "extractor inception", "budget cpu", "5000 generated")
    table_by_caption(site["page"], "digits", "extractor domain", "budget smoke")


def test_mean_and_sample_std_over_seeds(site):
    t = table_by_caption(site["page"], "digits", "extractor domain", "budget cpu", "5000 generated")
    fid_col, seeds_col = column(t, "FID"), t["headers"].index("Seeds")
    for model in ("gan", "vae", XSS_SCRIPT):
        (row,) = measured_rows(t, model)
        vals = FID[model]
        cell = row["cells"][fid_col]
        assert float(cell["data-sort"]) == pytest.approx(statistics.fmean(vals))
        std = float(np.std(vals, ddof=1))
        assert cell["text"].strip() == f"{np.mean(vals):.2f} \u00b1 {std:.2f}"
        assert row["cells"][seeds_col]["text"] == "3"
    (single,) = measured_rows(t, XSS_ATTR)
    assert single["cells"][fid_col]["text"].strip() == f"{FID[XSS_ATTR][0]:.2f} \u00b1 \u2014"
    assert single["cells"][seeds_col]["text"] == "1"


def test_rerun_of_a_seed_counts_once_with_its_newest_value(site):
    store = ResultsStore(site["results"])
    (cell,) = [c for c in aggregate(store.measurements()) if (c.model, c.metric, c.extractor, c.n_samples,
                                                               c.budget) == ("gan", keys.FID, "domain", 5000, "cpu")]
    assert cell.seeds == [0, 1, 2] and cell.values == FID["gan"]
    assert "d-0-0b" in cell.run_ids


def test_provenance_on_every_measured_row(site):
    for t in site["page"].tables:
        if "Provenance" not in t["headers"]:
            continue
        col = t["headers"].index("Provenance")
        for r in t["rows"]:
            if r["cls"] == "measured":
                title = r["cells"][col]["title"]
                assert "config hash: cfg" in title and "code version: 0.1.0+gabc" in title and "run ids: " in title
                assert "newest: 20" in title


def test_paper_rows_only_in_matching_dataset_and_extractor(site):
    page = site["page"]
    cifar = table_by_caption(page, "CIFAR-10", "extractor inception")
    labels = {r["cells"][0]["text"] for r in cifar["rows"] if r["cls"] == "paper"}
    assert {"paper Table 1", "paper Table 2", "paper Table 3", "paper Table 9a", "paper Table 9b"} <= labels
    gan = next(r for r in cifar["rows"] if r["cls"] == "paper" and r["cells"][0]["text"] == "paper Table 1")
    assert gan["cells"][column(cifar, "BPD")]["text"] == "[7.0]"       # bracketed = approximate
    assert gan["cells"][column(cifar, "FID")]["text"] == "31.4"
    for t in page.tables:
        if "digits" in t["caption"]:
            assert all(r["cls"] != "paper" for r in t["rows"]), t["caption"]
    reference = [t for t in page.tables if t["caption"].startswith("Published reference")]
    cells = {r["cells"][0]["text"] for t in reference for r in t["rows"]}
    assert cells == {f"Table {n}" for n in ("1", "2", "3", "4", "5", "8", "9a", "9b")}
    assert any("CIFAR-10 32\u00d732, Inception" in t["caption"] for t in reference)


def test_paper_numbers_transcription():
    assert PAPER_TABLES == ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Table 8", "Table 9a", "Table 9b")
    counts = {t: sum(r.table == t for r in PAPER_ROWS) for t in PAPER_TABLES}
    assert counts == {"Table 1": 5, "Table 2": 7, "Table 3": 20, "Table 4": 22, "Table 5": 20, "Table 8": 3,
                      "Table 9a": 4, "Table 9b": 4}
    for r in PAPER_ROWS:
        assert r.values and all(isinstance(r.value(m), float) for m in r.values)
        assert set(r.approx) <= set(r.values)

    def find(table, dataset, model, res=None):
        (row,) = [r for r in PAPER_ROWS if (r.table, r.dataset, r.model) == (table, dataset, model)
                  and res in (None, r.resolution)]
        return row
    gan = find("Table 1", "cifar10", "GAN")
    assert gan.values == {keys.BPD: "7.0", keys.IS: "6.8", keys.FID: "31.4"} and gan.approx == (keys.BPD,)
    assert find("Table 2", "cifar10", "GAN (rd)").approx == (keys.BPD,)
    assert find("Table 1", "cifar10", "AV-ADE").approx == ()
    assert find("Table 4", "imagenet64", "AV-ADE (wg, wd)").values[keys.BPD] == "4.90"
    assert find("Table 5", "lsun-church_outdoor", "AV-ADE (wg, rd)", 128).values == {keys.BPD: "3.5",
                                                                                     keys.FID: "47.3"}
    assert find("Table 8", "cifar10", "AV-ADE").values == {keys.GAN_TEST: "76.9", keys.GAN_TRAIN: "73.4"}
    assert find("Table 9b", "cifar10", "V-ADE (scales 3, blocks 2)").values[keys.FID] == "78.7"


def test_markup_in_names_claims_and_evidence_is_escaped(site):
    html = site["html"]
    for raw in (XSS_SCRIPT, XSS_ATTR, "<img src=x", "onerror=alert(1)>"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    # only our own sort script is inline: no store data inside <script>
    (script,) = site["page"].scripts
    assert "alert" not in script and "gan" not in script
    texts = "".join(site["page"].text)
    assert XSS_SCRIPT in texts and XSS_ATTR in texts     # shown to the reader as text


def test_claims_panel_latest_per_claim_with_status_and_evidence(site):
    (claims,) = [t for t in site["page"].tables if t["headers"][:1] == ["Claim"]]
    by_id = {r["cells"][0]["text"].split()[0]: r for r in claims["rows"]}
    assert set(by_id) == {"gan-vs-vae", "bpd"}
    assert by_id["bpd"]["cells"][1]["text"].strip() == "not reproduced"       # the latest evaluation
    assert "st-not-reproduced" in site["html"] and "st-reproduced" in site["html"]
    assert "delta" in by_id["bpd"]["cells"][3]["text"] and "-0.3" in by_id["bpd"]["cells"][3]["text"]
    assert "gan.fid" in by_id["gan-vs-vae"]["cells"][3]["text"]


def test_images_copied_next_to_index_and_linked_relatively(site):
    out = site["index"].parent
    srcs = [i["src"] for i in site["page"].imgs]
    assert srcs
    for src in srcs:
        assert not src.startswith(("/", "http:", "https:", "file:", "data:")) and ".." not in src
        assert (out / src).is_file(), src
    runs = site["root"] / "runs"
    copied = {(out / s).read_bytes() for s in srcs}
    assert (runs / "new-gan" / "samples.png").read_bytes() in copied     # newest finished gan run
    assert (runs / "d-0-2" / "samples.png").read_bytes() not in copied   # superseded
    assert (runs / "failed-vae" / "samples.png").read_bytes() not in copied
    assert (runs / "d-1-2" / "reconstructions.png").read_bytes() in copied
    alts = " ".join(i.get("alt", "") for i in site["page"].imgs)
    assert "BPD vs FID" in alts and "PRD:" in alts
    assert all(Image.open(out / s).format == "PNG" for s in srcs)


def test_no_network_resources_and_inline_assets(site):
    html = site["html"]
    assert "<style>" in html and "<script>" in html
    for attr in ('src="http', "src='http", 'href="http', "@import", "url(http"):
        assert attr not in html


def test_empty_and_missing_store(tmp_path):
    missing = tmp_path / "nowhere" / "results.sqlite"
    html = lb.build(missing, tmp_path / "a").read_text()
    assert not missing.exists()                 # reading never creates a store
    ResultsStore(tmp_path / "empty.sqlite")
    html2 = lb.build(tmp_path / "empty.sqlite", tmp_path / "b").read_text()
    for h in (html, html2):
        parse(h)
        assert "No results yet" in h and "python -m protocols.run --protocol ablation --dataset digits" in h
        assert "Published reference" in h


def test_prd_png_only_run_and_malformed_curve(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    rd = _run(store, tmp_path, "r1", "vae", "digits", 0, files=("prd_png",))
    _measure(store, "r1", "vae", "digits", 0, keys.FID, 3.0, "domain", 100)
    page = parse(lb.build(tmp_path / "r.sqlite", tmp_path / "site").read_text())
    assert any("PRD plot of vae" == i.get("alt") for i in page.imgs)
    (rd / "prd_curve.json").write_text(json.dumps({"precision": [1.0, 0.5], "recall": [0.0]}))
    with pytest.raises(ValueError, match="prd_curve.json"):
        lb.build(tmp_path / "r.sqlite", tmp_path / "site")


def test_cli(tmp_path, capsys):
    assert lb.main(["--results", str(tmp_path / "none.sqlite"), "--site", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "index.html").is_file()
    assert lb.main(["--results", str(tmp_path), "--site", str(tmp_path / "s")]) == 2
    assert "not a file" in capsys.readouterr().err


# ---- configurations, checkpoints, extractor identity and accuracy ------------------------------------------
def _config(steps, adv=1.0):
    return {"model": "avade", "dataset": "digits", "budget": "cpu", "seed": 0, "protocol": "ablation",
            "train": {"steps": steps, "lr": 0.002, "log_every": 50, "progress": True},
            "eval": {"n_samples": 5000, "inception_weights": "/somewhere/else.pth"},
            "model_cfg": {"adv_weight": adv, "width": 32}}


def _two_config_store(root: Path) -> Path:
    """avade at two configurations (2 seeds of train.steps=600, 1 seed of train.steps=3) and a one-config gan."""
    store = ResultsStore(root / "results.sqlite")
    plan = [("avade", "cfgA00000001", _config(600), (0, 1), "best val_bpd (2.8712)"),
            ("avade", "cfgB00000002", _config(3), (0,), "last (step 3)"),
            ("gan", "cfgC00000003", {**_config(600), "model": "gan"}, (0, 1), "last (step 600)")]
    for model, cfg, config, seeds, ckpt in plan:
        for s in seeds:
            rid = f"{model}-{cfg}-{s}"
            _run(store, root, rid, model, "digits", s, cfg=cfg, config={**config, "seed": s}, checkpoint=ckpt,
                 files=("samples", "curve"))
            _measure(store, rid, model, "digits", s, keys.BPD, 2.0 + s / 10 + (cfg == "cfgB00000002"), "", 360,
                     cfg=cfg, checkpoint=ckpt)
            _measure(store, rid, model, "digits", s, keys.FID, 20.0 + s + 10 * (cfg == "cfgB00000002"), "domain",
                     5000, cfg=cfg, checkpoint=ckpt)
            _measure(store, rid, model, "digits", s, keys.PRD_AUC, 0.5, "domain", 5000, cfg=cfg, checkpoint=ckpt)
    return root / "results.sqlite"


@pytest.fixture(scope="module")
def configs_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("cfgs")
    index = lb.build(_two_config_store(root), root / "site")
    html = index.read_text(encoding="utf-8")
    return {"root": root, "html": html, "page": parse(html)}


def test_configurations_are_separate_rows_labelled_by_their_differing_keys(configs_site):
    t = table_by_caption(configs_site["page"], "digits", "extractor domain")
    model_col, seeds_col, prov_col = (t["headers"].index(h) for h in ("Model", "Seeds", "Provenance"))
    rows = [r for r in t["rows"] if r["cls"] == "measured"]
    avade = [r for r in rows if r["cells"][model_col]["text"].startswith("avade")]
    assert len(avade) == 2                                        # never pooled into one row
    seeds = {r["cells"][model_col]["text"]: r["cells"][seeds_col]["text"] for r in avade}
    assert seeds == {"avade train.steps=600": "2", "avade train.steps=3": "1"}
    assert all(r["cells"][seeds_col]["text"] != "3" for r in rows)
    assert "3 seeds" not in configs_site["html"]
    # only hashed keys that differ: never log_every, progress, the seed or the Inception path
    assert "log_every" not in configs_site["html"] and "inception_weights" not in configs_site["html"]
    (gan,) = measured_rows(t, "gan")                              # one configuration: just the model
    assert gan["cells"][seeds_col]["text"] == "2"
    provs = {r["cells"][model_col]["text"]: r["cells"][prov_col]["text"] for r in avade}
    assert "cfg cfgA00000001" in provs["avade train.steps=600"] and "cfg cfgB00000002" in provs["avade train.steps=3"]
    fid_col = column(t, "FID")
    fids = {r["cells"][model_col]["text"]: float(r["cells"][fid_col]["data-sort"]) for r in avade}
    assert fids == {"avade train.steps=600": pytest.approx(20.5), "avade train.steps=3": pytest.approx(30.0)}


def test_grouping_by_group_key_and_two_configs_in_aggregate(configs_site, tmp_path):
    store = ResultsStore(configs_site["root"] / "results.sqlite", readonly=True)
    cells = [c for c in aggregate(store.measurements()) if (c.model, c.metric) == ("avade", keys.FID)]
    assert sorted(len(c.seeds) for c in cells) == [1, 2] and len({c.group for c in cells}) == 2


def test_config_labels_name_model_keys_and_several_keys():
    from leaderboard.configs import diff_labels
    configs = {"a": (_config(600, adv=1.0), "h1"), "b": (_config(600, adv=10.0), "h2"),
               "c": (_config(3, adv=10.0), "h3"), "d": ({}, "h4")}
    labels = diff_labels({"a": ("p", "avade"), "b": ("p", "avade"), "c": ("p", "avade")}, configs)
    assert labels["a"][0] == "train.steps=600, model.adv_weight=1.0"
    assert labels["b"][0] == "train.steps=600, model.adv_weight=10.0"
    assert labels["c"][0] == "train.steps=3, model.adv_weight=10.0"
    assert diff_labels({"a": ("p", "avade"), "b": ("p", "gan")}, configs) == {}      # one config per model
    # a configuration without a recorded config (legacy run): told apart by its hash
    legacy = diff_labels({"a": ("p", "avade"), "d": ("p", "avade")}, configs)
    assert legacy["a"][0] == "cfg h1" and legacy["d"][0] == "cfg h4"


def test_checkpoint_column_and_mixed_rule_note(configs_site):
    t = table_by_caption(configs_site["page"], "digits", "extractor domain")
    model_col, ckpt_col = t["headers"].index("Model"), t["headers"].index("Checkpoint")
    by_model = {r["cells"][model_col]["text"]: r["cells"][ckpt_col] for r in t["rows"] if r["cls"] == "measured"}
    assert by_model["avade train.steps=600"]["text"] == "best val_bpd (2.8712)"
    assert "seed 0: best val_bpd (2.8712)" in by_model["avade train.steps=600"]["title"]
    assert by_model["avade train.steps=3"]["text"] == "last (step 3)"
    assert by_model["gan"]["text"] == "last (step 600)"
    assert "different rules (best val_bpd, last)" in configs_site["html"]


def test_extractor_accuracy_in_caption_and_identity_in_tables(configs_site, site):
    t = table_by_caption(configs_site["page"], "digits", "extractor domain")
    assert "domain net held-out accuracy 97.2%" in t["caption"] or "97.3%" in t["caption"]
    assert f"[id {EXT_ID['domain'][:8]}]" in t["caption"]
    inc = table_by_caption(site["page"], "digits", "extractor inception", "budget cpu")
    assert "accuracy" not in inc["caption"]       # recorded for the domain net only


def test_tables_never_compare_two_extractor_identities(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    for ext_id, fid in (("domnet-aaaaaaaa", 10.0), ("domnet-bbbbbbbb", 20.0)):
        cfg = f"cfg-{ext_id[-4:]}"
        _measure(store, f"r-{ext_id}", "gan", "digits", 0, keys.FID, fid, "domain", 5000, cfg=cfg, ext_id=ext_id)
    page = parse(lb.build(tmp_path / "r.sqlite", tmp_path / "site").read_text())
    a = table_by_caption(page, "extractor domain [id domnet-a]")
    b = table_by_caption(page, "extractor domain [id domnet-b]")
    assert len(a["rows"]) == len(b["rows"]) == 1


def test_legacy_rows_without_identity_still_render(tmp_path):
    """A store written before group keys: the old schema, opened read-only; each (model, config hash) is a group."""
    import sqlite3
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
    CREATE TABLE measurements (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, model TEXT NOT NULL,
        protocol TEXT NOT NULL, dataset TEXT NOT NULL, budget TEXT NOT NULL, seed INTEGER NOT NULL,
        metric TEXT NOT NULL, value REAL NOT NULL, extractor TEXT NOT NULL DEFAULT '',
        n_samples INTEGER NOT NULL DEFAULT 0, config_hash TEXT NOT NULL DEFAULT '',
        code_version TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '{}');
    CREATE TABLE runs (run_id TEXT PRIMARY KEY, model TEXT NOT NULL, protocol TEXT NOT NULL, dataset TEXT NOT NULL,
        budget TEXT NOT NULL, seed INTEGER NOT NULL, run_dir TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}', config_hash TEXT NOT NULL DEFAULT '', code_version TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'running', created TEXT NOT NULL, finished TEXT);
    CREATE TABLE claims (id INTEGER PRIMARY KEY AUTOINCREMENT, protocol TEXT NOT NULL, dataset TEXT NOT NULL,
        budget TEXT NOT NULL, extractor TEXT NOT NULL DEFAULT '', claim_id TEXT NOT NULL, text TEXT NOT NULL,
        status TEXT NOT NULL, evidence TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL);
    """)
    rows = [("r0", "vae", 0, "bpd", 2.1, "", 360, "old1"), ("r0", "vae", 0, "fid", 30.0, "domain", 5000, "old1"),
            ("r1", "vae", 1, "bpd", 2.3, "", 360, "old1"), ("r1", "vae", 1, "fid", 34.0, "domain", 5000, "old1"),
            ("r2", "vae", 0, "fid", 90.0, "domain", 5000, "old2")]
    con.executemany("INSERT INTO measurements (run_id, model, protocol, dataset, budget, seed, metric, value, "
                    "extractor, n_samples, config_hash, created) VALUES (?,?,'ablation','digits','cpu',?,?,?,?,?,?,"
                    "'2020-01-01T00:00:00+00:00')", rows)
    con.execute("INSERT INTO claims (protocol, dataset, budget, claim_id, text, status, created) VALUES "
                "('ablation','digits','cpu','c1','old claim','reproduced','2020-01-01')")
    con.commit()
    con.close()
    before = path.read_bytes()
    page = parse(lb.build(path, tmp_path / "site").read_text())
    assert path.read_bytes() == before                         # read only: not even migrated
    t = table_by_caption(page, "digits", "extractor domain")
    model_col, seeds_col, fid_col = t["headers"].index("Model"), t["headers"].index("Seeds"), column(t, "FID")
    rows = {r["cells"][model_col]["text"]: r for r in t["rows"] if r["cls"] == "measured"}
    assert set(rows) == {"vae cfg old1", "vae cfg old2"}       # two legacy configurations, two rows
    assert rows["vae cfg old1"]["cells"][seeds_col]["text"] == "2"
    assert float(rows["vae cfg old1"]["cells"][fid_col]["data-sort"]) == pytest.approx(32.0)
    assert rows["vae cfg old1"]["cells"][column(t, "BPD")]["text"].startswith("2.2")   # BPD joins its group
    (claims,) = [x for x in page.tables if x["headers"][:1] == ["Claim"]]
    assert "not recorded" in claims["rows"][0]["cells"][4]["text"]


# ---- claims per configuration set ----------------------------------------------------------------------
def test_claims_show_their_configurations_and_latest_verdict_per_configuration_set(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    common = dict(protocol="ablation", dataset="digits", budget="cpu", extractor="domain", claim_id="ade-bpd",
                  text="ADE improves BPD")
    store.add_claim(**common, status="inconclusive", evidence={"d": 1}, configs={"avade": "aaa111", "gan": "ggg"})
    store.add_claim(**common, status="reproduced", evidence={"d": 2}, configs={"avade": "aaa111", "gan": "ggg"})
    store.add_claim(**common, status="not reproduced", evidence={"d": 3}, configs={"avade": "bbb222", "gan": "ggg"})
    page = parse(lb.build(tmp_path / "r.sqlite", tmp_path / "site").read_text())
    (claims,) = [t for t in page.tables if t["headers"][:1] == ["Claim"]]
    assert claims["headers"][4] == "Configurations"
    got = sorted((r["cells"][4]["text"], r["cells"][1]["text"].strip()) for r in claims["rows"])
    assert got == [("avadecfg aaa111gancfg ggg", "reproduced"), ("avadecfg bbb222gancfg ggg", "not reproduced")]


# ---- reference numbers ----------------------------------------------------------------------------------
def test_modern_likelihood_reference_table(site):
    from leaderboard.reference_numbers import MODERN_CAPTION, MODERN_ROWS
    t = table_by_caption(site["page"], MODERN_CAPTION)
    assert t["headers"][:2] == ["Paper", "Model"]
    by_model = {r["cells"][1]["text"]: r for r in t["rows"]}
    assert set(by_model) == {r.model for r in MODERN_ROWS}
    ddpm = by_model["DDPM (L_simple)"]
    assert ddpm["cells"][0]["text"] == "Ho et al. 2020, Table 1"
    assert ddpm["cells"][column(t, "BPD")]["text"] == "\u2264 3.75"
    assert ddpm["cells"][column(t, "FID")]["text"] == "3.17"
    for r in MODERN_ROWS:
        assert r.url.startswith("https://arxiv.org/abs/") and r.source and r.values
        assert all(isinstance(r.value(m), float) for m in r.values)
    # never mixed into measured tables or into the paper's own reference tables
    assert all(r["cells"][0]["text"].startswith("Table ") for x in site["page"].tables
               if x["caption"].startswith("Published reference") for r in x["rows"])


def test_fashion_mnist_published_likelihood_table(site):
    from leaderboard.reference_numbers import FASHION_CAPTION, FASHION_ROWS, MODERN_CAPTION
    t = table_by_caption(site["page"], FASHION_CAPTION)
    assert t["headers"][:2] == ["Paper", "Model"]
    assert {r["cells"][1]["text"] for r in t["rows"]} == {r.model for r in FASHION_ROWS}
    glow = next(r for r in t["rows"] if r["cells"][1]["text"] == "Glow")
    assert glow["cells"][0]["text"] == "Nalisnick et al. 2019, Figure 1"
    assert glow["cells"][column(t, "BPD")]["text"] == "2.958"
    assert "held-out bits/dim on Fashion-MNIST" in site["html"] and FASHION_ROWS[0].note in site["html"]
    # one table per dataset: the CIFAR-10 table holds no Fashion-MNIST row
    cifar = table_by_caption(site["page"], MODERN_CAPTION)
    assert "Glow" not in {r["cells"][1]["text"] for r in cifar["rows"]}
    assert all(r.dataset == "fashion-mnist" and r.url.startswith("https://arxiv.org/abs/") for r in FASHION_ROWS)


# ---- the cost channel of the scatter ---------------------------------------------------------------------
def test_scatter_marker_size_from_sampling_cost(tmp_path):
    from leaderboard import figures
    assert figures.marker_size(None) == figures.DEFAULT_MARKER == figures.marker_size(1.0)
    assert figures.marker_size(0.25) < figures.marker_size(1.0) < figures.marker_size(10) < figures.marker_size(1000)
    store = ResultsStore(tmp_path / "r.sqlite")
    for model, speed in (("gan", 1.0), ("avade", 0.5), ("ddpm", 0.001), ("vae", None)):
        _measure(store, f"r-{model}", model, "digits", 0, keys.BPD, 2.0, "", 360)
        _measure(store, f"r-{model}", model, "digits", 0, keys.FID, 20.0, "domain", 5000)
        if speed is not None:
            _measure(store, f"r-{model}", model, "digits", 0, keys.SPEED_VS_GAN, speed, "", 1000)
    (table,) = [t for t in group_tables(aggregate(ResultsStore(tmp_path / "r.sqlite").measurements()))
                if t.extractor]
    points, legend = lb.scatter_points(table)
    costs = {p.label: p.cost for p in points}
    assert costs == {"gan": 1.0, "avade": 2.0, "ddpm": pytest.approx(1000.0), "vae": None}
    assert "GAN" in legend
    page = parse(lb.build(tmp_path / "r.sqlite", tmp_path / "site").read_text())
    fig = [i for i in page.imgs if i.get("alt", "").startswith("BPD vs FID")]
    assert len(fig) == 1 and (tmp_path / "site" / fig[0]["src"]).is_file()
    html = (tmp_path / "site" / "index.html").read_text()
    assert "Marker size: sampling cost" in html and "hollow markers: no cost measured" in html
    t = table_by_caption(page, "digits", "extractor domain")
    assert any(h.startswith("speed vs GAN") for h in t["headers"])
    # NFE when there is no speed measurement; no cost at all: no legend
    _measure(store, "r-x", "x", "digits", 0, keys.NFE, 1000, "", 0, cfg="other")
    assert lb.scatter_points(table)[1]
    no_cost = [c for c in aggregate(ResultsStore(tmp_path / "r.sqlite").measurements())
               if c.metric != keys.SPEED_VS_GAN]
    (plain,) = [t for t in group_tables(no_cost) if t.extractor]
    assert lb.scatter_points(plain)[1] == ""


def test_build_reads_the_store_without_writing_it(tmp_path):
    results = make_store(tmp_path)
    before = results.read_bytes()
    lb.build(results, tmp_path / "site")
    assert results.read_bytes() == before


def test_steps_vs_fid_curve_and_floor_row(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    for seed in (0, 1):
        rid = f"vdm-{seed}"
        _run(store, tmp_path, rid, "vdm", "digits", seed)
        for metric, value, ext in ((keys.FID, 2.0 + seed, "domain"), (keys.fid_at_steps(10), 9.0 + seed, "domain"),
                                   (keys.fid_at_steps(25), 5.0 + seed, "domain"), (keys.NFE, 100.0, ""),
                                   (keys.BPD, 2.1, "")):
            _measure(store, rid, "vdm", "digits", seed, metric, value, ext, 5000 if ext else 0)
        rid = f"real-{seed}"
        _run(store, tmp_path, rid, "real", "digits", seed)
        _measure(store, rid, "real", "digits", seed, keys.FID, 0.5, "domain", 5000)
    page = lb.build(tmp_path / "r.sqlite", tmp_path / "site").read_text()
    assert "FID vs sampling steps" in page and "real data (floor)" in page
    steps = [p for p in (tmp_path / "site" / "img").glob("steps-*.png")]
    assert len(steps) == 1
