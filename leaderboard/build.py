"""Build the static leaderboard site from the results store (DESIGN "Leaderboard").

    python -m leaderboard.build [--results results/results.sqlite] [--out leaderboard/site]

Reads only the store (``protocols.store.ResultsStore``: measurements, runs, claims) and the run
directories it names, and writes ``<out>/index.html`` plus ``<out>/img/*.png``.  The page opens from
disk: CSS and JS are inline, images are linked relatively, nothing is fetched from the network.
All text that comes from configs, names, claims or evidence goes through jinja2 autoescaping.

Python API (the protocols call it after every run)::

    from leaderboard.build import build
    index_html = build("results/results.sqlite", "leaderboard/site")
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import jinja2
from markupsafe import Markup

from metrics import keys
from protocols.store import ResultsStore, utcnow

from . import figures, gallery, views
from .paper_numbers import PAPER_ROWS
from .tables import Table, aggregate, group_tables

DEFAULT_RESULTS = Path("results/results.sqlite")
DEFAULT_OUT = Path("leaderboard/site")
PACKAGE_DIR = Path(__file__).resolve().parent
FIRST_RUN = "python -m protocols.run --protocol ablation --dataset digits"


def load_store(results_path: Path) -> Dict[str, list]:
    """Measurements, runs and latest claims; a store file that does not exist yet means no results."""
    if not results_path.exists():
        return {"measurements": [], "runs": [], "claims": []}
    if not results_path.is_file():
        raise ValueError(f"results store {results_path} is not a file; pass --results PATH/TO/results.sqlite")
    store = ResultsStore(results_path)
    runs = store.query("SELECT rowid AS seq, * FROM runs ORDER BY created, rowid")  # seq breaks time ties
    return {"measurements": with_run_provenance(store.measurements(), runs), "runs": runs,
            "claims": store.claims(latest_only=True)}


def with_run_provenance(measurements: List[dict], runs: List[dict]) -> List[dict]:
    """Fill a measurement's empty config hash / code version from its row in ``runs`` (same run id)."""
    by_id = {r["run_id"]: r for r in runs}
    for m in measurements:
        run = by_id.get(m["run_id"])
        for k in ("config_hash", "code_version"):
            if run is not None and not m[k]:
                m[k] = run[k]
    return measurements


def scatter_points(table: Table) -> List[tuple]:
    """(label, BPD mean, std, FID mean, std) for each row that has both; BPD preferred over BPD (IW)."""
    fid = next((c for c in table.columns if c.metric == keys.FID and c.extractor), None)
    bpd = next((c for m in (keys.BPD, keys.BPD_IW) for c in table.columns if c.metric == m and not c.extractor),
               None)
    if fid is None or bpd is None:
        return []
    several = len({r.protocol for r in table.rows}) > 1
    return [(f"{r.model} ({r.protocol})" if several else r.model, r.cells[bpd].mean, r.cells[bpd].std,
             r.cells[fid].mean, r.cells[fid].std) for r in table.rows if bpd in r.cells and fid in r.cells]


def table_figure(table: Table, out_dir: Path) -> Optional[dict]:
    points = scatter_points(table)
    if not points:
        return None
    rel = gallery.media_name("scatter", *map(str, table.key))
    title = f"{table.dataset} / {table.extractor} / {table.budget} / n={table.n_samples}"
    figures.scatter_png(points, out_dir / rel, title)
    return {"src": rel, "alt": f"BPD vs FID, {title}",
            "caption": "Coverage (BPD, held-out) vs quality (FID): one point per model, error bars = std over seeds."}


def prd_figures(media: List[gallery.RunMedia], out_dir: Path) -> Dict[str, List[dict]]:
    """dataset -> PRD plots, one per (extractor, budget, protocol), one curve per model."""
    groups: Dict[tuple, List[gallery.RunMedia]] = defaultdict(list)
    for m in media:
        if m.curve is not None:
            r = m.run
            groups[(r["dataset"], m.prd_extractor, r["budget"], r["protocol"])].append(m)
    out: Dict[str, List[dict]] = defaultdict(list)
    for (dataset, extractor, budget, protocol), items in sorted(groups.items()):
        rel = gallery.media_name("prd", dataset, extractor, budget, protocol)
        title = f"PRD: {dataset} / {extractor or 'extractor not recorded'} / {budget} / {protocol}"
        figures.prd_png([(m.run["model"], *m.curve) for m in items], out_dir / rel, title)
        out[dataset].append({"src": rel, "alt": title, "caption": f"{title} (newest finished run per model)"})
    return out


def gallery_view(media: List[gallery.RunMedia]) -> Dict[str, List[dict]]:
    """dataset -> per-protocol lists of model cards (only runs that left images)."""
    by_ds: Dict[str, Dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for m in media:
        if m.images:
            r = m.run
            by_ds[r["dataset"]][r["protocol"]].append({
                "model": r["model"], "run_id": r["run_id"], "budget": r["budget"], "seed": r["seed"],
                "finished": r["finished"] or r["created"], "images": m.images})
    return {ds: [{"protocol": p, "cards": cards} for p, cards in sorted(protos.items())]
            for ds, protos in by_ds.items()}


def dataset_sections(tables: List[Table], media: List[gallery.RunMedia], out_dir: Path) -> List[dict]:
    prd = prd_figures(media, out_dir)
    cards = gallery_view(media)
    names = sorted({t.dataset for t in tables} | set(prd) | set(cards))
    sections = []
    for ds in names:
        tabs = [{"table": views.table_view(t, PAPER_ROWS), "figure": table_figure(t, out_dir)}
                for t in tables if t.dataset == ds]
        sections.append({"id": views.slug("ds", ds), "title": views.dataset_label(ds), "dataset": ds,
                         "tables": tabs, "prd": prd.get(ds, []), "gallery": cards.get(ds, [])})
    return sections


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    # Our own static files, inlined verbatim: trusted markup, not data.
    env.globals["inline"] = lambda name: Markup((PACKAGE_DIR / "static" / name).read_text())
    return env


def render(context: dict) -> str:
    return _environment().get_template("index.html.j2").render(**context)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build(results_path: str | os.PathLike = DEFAULT_RESULTS, out_dir: str | os.PathLike = DEFAULT_OUT) -> Path:
    """Write ``out_dir/index.html`` (and its images) from the store at ``results_path``; return its path."""
    started = time.time()
    results_path, out_dir = Path(results_path), Path(out_dir)
    data = load_store(results_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    media = gallery.collect_media(data["runs"], data["measurements"], out_dir)
    sections = dataset_sections(group_tables(aggregate(data["measurements"])), media, out_dir)
    html = render({"sections": sections, "claims": views.claim_views(data["claims"]),
                   "reference": views.reference_views(PAPER_ROWS), "generated": utcnow(),
                   "store": str(results_path), "store_exists": results_path.exists(), "first_run": FIRST_RUN,
                   "counts": {k: len(v) for k, v in data.items()}})
    index = out_dir / "index.html"
    _write_atomic(index, html)
    gallery.prune_images(out_dir, _linked_images(sections, media), since=started)
    return index


def _linked_images(sections: List[dict], media: List[gallery.RunMedia]) -> set:
    keep = {rel for m in media for rel in m.images.values()}
    for s in sections:
        keep |= {f["src"] for f in s["prd"]}
        keep |= {t["figure"]["src"] for t in s["tables"] if t["figure"]}
    return keep


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m leaderboard.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results store (SQLite)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory for index.html and img/")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    try:
        index = build(args.results, args.out)
    except (ValueError, FileNotFoundError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.results.exists():
        print(f"note: no results store at {args.results} yet; wrote a page saying so", file=sys.stderr)
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
