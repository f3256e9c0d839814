"""Build the static leaderboard site from the results store (docs/design.md "Results store and page").

    python -m leaderboard.build [--results results/results.sqlite] [--site leaderboard/site] [--debug]

Without flags it reads $AVADE_RESULTS and writes $AVADE_SITE where they are set, as ``python -m protocols.run``
does (common/defaults.py), so it rebuilds the page of the store the last run wrote.  ``--out`` (now ``--site``)
works for one more release.

Reads only the store (``common.store.ResultsStore`` opened read-only: measurements, runs, claims) and the
run directories it names, and writes ``<out>/index.html`` plus ``<out>/img/*.png``; it never writes to the
store, so a store on a read-only disk builds too.  The page opens from disk: CSS and JS are inline, images
are linked relatively, nothing is fetched from the network.  All text that comes from configs, names,
claims or evidence goes through jinja2 autoescaping.

Rows are grouped by configuration (the store's ``group_key``): seeds of one configuration are aggregated,
two configurations are never pooled (see ``leaderboard.tables``).

Several processes may build the same site at once (every protocol run rebuilds it at its end).  A build
holds an exclusive ``flock`` on ``<out>/.build.lock`` from before it reads the store until its last file is
written, so the build that gets the lock last reads every row committed before it, and its page is the one
left on disk.

Python API (the CLI ``protocols.run`` calls it after every run)::

    from leaderboard.build import build
    index_html = build("results/results.sqlite", "leaderboard/site")
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from common import defaults
from common.cli import Parser, run_main
from common.io import atomic_write
from metrics import keys
from common.store import ResultsStore, StoreError, utcnow
from common.studies import TRIAL_PROTOCOL, StudyRecords

from . import configs as cfgs
from . import figures, gallery, studies, views
from .paper_numbers import PAPER_ROWS
from .reference_numbers import FASHION_ROWS, MODERN_ROWS
from .tables import Table, aggregate, group_tables

PACKAGE_DIR = Path(__file__).resolve().parent
FIRST_RUN = "python -m protocols.run --protocol ablation --dataset digits"
LOCK_NAME = ".build.lock"
COST_METRICS = {   # metric -> (how a value becomes a cost, legend title); the first one a table has is used
    keys.SPEED_VS_GAN: (lambda v: 1.0 / v if v > 0 else None, "time per sample, \u00d7 the GAN's"),
    keys.NFE: (lambda v: v if v > 0 else None, "network evaluations per sample"),
}


class LeaderboardError(ValueError):
    """Bad input to the leaderboard (store or output folder); ``str()`` is one line saying what to do."""


# ---- reading the store (never writing it) -----------------------------------------------------------
def _read(store: ResultsStore) -> Dict[str, list]:
    """Final measurements (the tables), snapshot measurements (the learning curves), runs and latest claims."""
    measurements = store.measurements()      # first: every row read here has its run in the runs read next
    runs = store.runs()
    rows = with_run_provenance(measurements, runs)
    return {"measurements": [m for m in rows if not m.get("snapshot")], "runs": runs,
            "claims": store.claims(latest_only=True), "snapshots": [m for m in rows if m.get("snapshot")],
            "studies": StudyRecords(store).studies(), "trials": StudyRecords(store).trials()}


def _read_snapshot(path: Path) -> Dict[str, list]:
    """Read a store in a folder this process cannot write (SQLite's WAL mode needs a writable folder even to
    read): copy the file and its write-ahead log into a temporary folder and read the copy."""
    with tempfile.TemporaryDirectory(prefix="avade-leaderboard-") as tmp:
        copy = Path(tmp) / path.name
        for suffix in ("", "-wal"):
            src = Path(f"{path}{suffix}")
            if src.is_file():
                shutil.copyfile(src, f"{copy}{suffix}")
        try:
            return _read(ResultsStore(copy, readonly=True))
        except StoreError as e:
            raise StoreError(str(e).replace(str(copy), str(path))) from None


def load_store(results_path: Path) -> Dict[str, list]:
    """Measurements, runs and latest claims; a store file that does not exist yet means no results."""
    if not results_path.exists():
        return {"measurements": [], "runs": [], "claims": [], "snapshots": [], "studies": [], "trials": []}
    if not results_path.is_file():
        raise LeaderboardError(f"results store {results_path} is a folder, not a file; pass --results "
                               f"PATH/TO/results.sqlite")
    try:
        store = ResultsStore(results_path, readonly=True)
    except StoreError:
        if os.access(results_path.parent, os.W_OK) or not os.access(results_path, os.R_OK):
            raise
        return _read_snapshot(results_path)
    return _read(store)


def without_trials(data: Dict[str, list]) -> Dict[str, list]:
    """The store's rows without the trials of tuning studies (measured on the validation split: they appear only in
    their study's section, leaderboard/studies.py)."""
    return {k: [r for r in v if r.get("protocol") != TRIAL_PROTOCOL] if k in ("measurements", "snapshots", "runs")
            else v for k, v in data.items()}


def with_run_provenance(measurements: List[dict], runs: List[dict]) -> List[dict]:
    """Fill a measurement's empty config hash / code version / group key / checkpoint from its run."""
    by_id = {r["run_id"]: r for r in runs}
    for m in measurements:
        run = by_id.get(m["run_id"])
        if run is None:
            continue
        for k in ("config_hash", "code_version"):
            if not m[k]:
                m[k] = run[k]
        if not m.get("group_key") and run.get("group_key") and run["config_hash"] == m["config_hash"]:
            m["group_key"] = run["group_key"]
        if not (m.get("extra") or {}).get("checkpoint") and run.get("checkpoint"):
            m["checkpoint"] = run["checkpoint"]
    return measurements


# ---- configuration labels ---------------------------------------------------------------------------
def label_rows(table: Table, configs: Dict[str, tuple]) -> None:
    """Label each row whose (protocol, model) has several configurations in this table."""
    known = {**{r.group: ({}, (r.provenance()["config_hashes"] or [""])[0]) for r in table.rows}, **configs}
    labels = cfgs.diff_labels({r.group: (r.protocol, r.model) for r in table.rows}, known)
    for r in table.rows:
        r.label, r.label_title = labels.get(r.group, ("", ""))


# ---- figures ----------------------------------------------------------------------------------------
def _cost_column(table: Table):
    for metric, (to_cost, legend) in COST_METRICS.items():
        col = next((c for c in table.columns if c.metric == metric and not c.extractor), None)
        if col is not None:
            return col, to_cost, legend
    return None, None, ""


def scatter_points(table: Table) -> Tuple[List[figures.Point], str]:
    """One point per configuration that has BPD (preferred over BPD (IW)) and FID; the cost channel's legend
    title ('' when no row of the table measured a sampling cost)."""
    fid = next((c for c in table.columns if c.metric == keys.FID and c.extractor), None)
    bpd = next((c for m in (keys.BPD, keys.BPD_IW) for c in table.columns if c.metric == m and not c.extractor),
               None)
    if fid is None or bpd is None:
        return [], ""
    cost_col, to_cost, legend = _cost_column(table)
    several = len({r.protocol for r in table.rows}) > 1
    points = []
    for r in table.rows:
        if bpd in r.cells and fid in r.cells:
            name = f"{r.model} [{r.label}]" if r.label else r.model
            cost = to_cost(r.cells[cost_col].mean) if cost_col is not None and cost_col in r.cells else None
            points.append(figures.Point(f"{name} ({r.protocol})" if several else name, r.cells[bpd].mean,
                                        r.cells[bpd].std, r.cells[fid].mean, r.cells[fid].std, cost))
    return points, (legend if points and any(p.cost is not None for p in points) else "")


def table_figure(table: Table, out_dir: Path) -> Optional[dict]:
    points, cost_legend = scatter_points(table)
    if not points:
        return None
    rel = gallery.media_name("scatter", *map(str, table.key))
    title = f"{table.dataset} / {table.extractor} / {table.budget} / n={table.n_samples}"
    figures.scatter_png(points, out_dir / rel, title, cost_label=cost_legend)
    caption = ("Coverage (BPD, held-out) vs quality (FID): one point per configuration, error bars = std over "
               "seeds.")
    if cost_legend:
        caption += (f" Marker size: sampling cost ({cost_legend}; larger = slower); hollow markers: no cost "
                    "measured.")
    return {"src": rel, "alt": f"BPD vs FID, {title}", "caption": caption}


STEPS_METRIC = re.compile(r"^fid@(\d+)steps$")


def steps_figure(table: Table, out_dir: Path) -> Optional[dict]:
    """The steps-vs-FID curve of every row with FID measured at several sampler step counts (its own FID sits at
    its own step count, the row's NFE)."""
    curves = []
    for row in table.rows:
        points = {}
        for col, c in row.cells.items():
            m = STEPS_METRIC.match(col.metric)
            if m:
                points[int(m.group(1))] = (c.mean, c.std)
        nfe = next((c.mean for col, c in row.cells.items() if col.metric == keys.NFE), None)
        fid = next((c for col, c in row.cells.items() if col.metric == keys.FID), None)
        if points and nfe and fid is not None:
            points[int(nfe)] = (fid.mean, fid.std)
        if len(points) >= 2:
            steps = sorted(points)
            curves.append((f"{row.model} {row.label}".strip(), steps, [points[k][0] for k in steps],
                           [points[k][1] for k in steps]))
    if not curves:
        return None
    rel = gallery.media_name("steps", *map(str, table.key))
    title = f"{table.dataset} / {table.extractor} / {table.budget} / n={table.n_samples}"
    figures.steps_png(curves, out_dir / rel, title)
    return {"src": rel, "alt": f"FID vs sampling steps, {title}",
            "caption": "Quality against sampling cost: FID of a step-based sampler at several step counts "
                       "(error bars = std over seeds); a one-pass model costs one network evaluation."}


#: the snapshot metrics drawn as learning curves (leaderboard/figures.py CURVE_ROWS)
CURVE_METRICS = (keys.FID, keys.BPD, keys.RECALL, keys.CLASS_KL)


def curve_figures(snapshots: List[dict], out_dir: Path, configs: Dict[str, tuple]) -> Dict[str, List[dict]]:
    """dataset -> learning-curve plots, one per (protocol, budget, extractor): FID and BPD at each snapshot against
    training images seen and against training seconds, one line per configuration (mean over seeds, band =
    range over seeds)."""
    groups: Dict[tuple, Dict[str, list]] = defaultdict(lambda: defaultdict(list))
    extractors: Dict[tuple, set] = defaultdict(set)
    for m in snapshots:
        if m["metric"] in CURVE_METRICS and m["model"] != "real" and m.get("images_seen", -1) >= 0:
            key = (m["dataset"], m["protocol"], m["budget"])
            groups[key][m.get("group_key") or m["config_hash"]].append(m)
            if m["extractor"]:
                extractors[key].add(m["extractor"])
    out: Dict[str, List[dict]] = defaultdict(list)
    for (dataset, protocol, budget), by_group in sorted(groups.items()):
        labels = cfgs.diff_labels({g: (protocol, rows[0]["model"]) for g, rows in by_group.items()}, configs)
        series = []
        for g, rows in sorted(by_group.items(), key=lambda kv: kv[1][0]["model"]):
            points: Dict[str, Dict[int, list]] = defaultdict(lambda: defaultdict(list))
            for r in rows:
                points[r["metric"]][r["snapshot"]].append(r)
            curves = {}
            for metric, per in points.items():
                idx = sorted(per)
                curves[metric] = [(sum(r["images_seen"] for r in per[i]) / len(per[i]),
                                   sum(r["train_seconds"] for r in per[i]) / len(per[i]),
                                   [r["value"] for r in per[i]]) for i in idx]
            series.append((cfgs.label_for(g, labels, rows[0]["model"]), curves))
        rel = gallery.media_name("curves", dataset, protocol, budget)
        ext = ", ".join(sorted(extractors[(dataset, protocol, budget)])) or "?"
        title = f"{dataset} / {protocol} / {budget} / FID features: {ext}"
        figures.curves_png(series, out_dir / rel, title)
        out[dataset].append({"src": rel, "alt": f"learning curves, {title}",
                             "caption": f"{title}: FID, recall and class KL (snapshot samples) and held-out BPD "
                                        "(snapshot subset) at each snapshot, against training images seen (left) "
                                        "and seconds of training steps (right, the equal-compute view); line = "
                                        "mean over seeds, band = range over seeds."})
        shares = class_share_figure(dataset, protocol, budget, by_group, labels, out_dir)
        if shares:
            out[dataset].append(shares)
    return out


def class_share_figure(dataset: str, protocol: str, budget: str, by_group: Dict[str, list], labels, out_dir: Path
                       ) -> Optional[dict]:
    """The classes each configuration generates along training (mean share over seeds at each snapshot, from the
    class-coverage rows' stored shares): which classes a model dropped, and when."""
    panels, names = [], None
    for g, rows in sorted(by_group.items(), key=lambda kv: kv[1][0]["model"]):
        per: Dict[int, list] = defaultdict(list)
        for r in rows:
            extra = r.get("extra") or {}
            if r["metric"] == keys.CLASS_KL and isinstance(extra.get("shares"), list):
                per[r["snapshot"]].append(r)
        if not per:
            continue
        first = per[min(per)][0]["extra"]
        names = names or [str(n) for n in first.get("class_names", range(len(first["shares"])))]
        points = [(sum(r["images_seen"] for r in per[i]) / len(per[i]),
                   [sum(r["extra"]["shares"][c] for r in per[i]) / len(per[i]) for c in range(len(names))])
                  for i in sorted(per) if all(len(r["extra"]["shares"]) == len(names) for r in per[i])]
        if points:
            panels.append((cfgs.label_for(g, labels, rows[0]["model"]), points, first.get("real_shares") or []))
    if not panels:
        return None
    rel = gallery.media_name("class-shares", dataset, protocol, budget)
    title = f"{dataset} / {protocol} / {budget} / classes under the domain classifier"
    figures.class_shares_png(panels, names, out_dir / rel, title)
    return {"src": rel, "alt": f"class shares along training, {title}",
            "caption": f"{title}: the share of each configuration's snapshot samples that the domain classifier "
                       "puts in each class (stacked, mean over seeds) against training images seen; the ticks on "
                       "the right edge are the real test split's shares. A band that thins to nothing is a class "
                       "the model stopped generating."}


def prd_figures(media: List[gallery.RunMedia], out_dir: Path, configs: Dict[str, tuple]) -> Dict[str, List[dict]]:
    """dataset -> PRD plots, one per (extractor, extractor id, budget, protocol), one curve per configuration."""
    groups: Dict[tuple, List[gallery.RunMedia]] = defaultdict(list)
    for m in media:
        if m.curve is not None:
            r = m.run
            groups[(r["dataset"], *m.prd_extractor, r["budget"], r["protocol"])].append(m)
    out: Dict[str, List[dict]] = defaultdict(list)
    for (dataset, extractor, extractor_id, budget, protocol), items in sorted(groups.items()):
        labels = cfgs.diff_labels({m.group: (protocol, m.run["model"]) for m in items}, configs)
        rel = gallery.media_name("prd", dataset, extractor, extractor_id, budget, protocol)
        ext = (extractor or "extractor not recorded") + (f" [id {extractor_id[:8]}]" if extractor_id else "")
        title = f"PRD: {dataset} / {ext} / {budget} / {protocol}"
        figures.prd_png([(cfgs.label_for(m.group, labels, m.run["model"]), *m.curve) for m in items],
                        out_dir / rel, title)
        out[dataset].append({"src": rel, "alt": title,
                             "caption": f"{title} (newest finished run per configuration)"})
    return out


def gallery_view(media: List[gallery.RunMedia], configs: Dict[str, tuple]) -> Dict[str, List[dict]]:
    """dataset -> per-protocol lists of configuration cards (only runs that left images)."""
    by_ds: Dict[str, Dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for m in media:
        if m.images:
            by_ds[m.run["dataset"]][m.run["protocol"]].append(m)
    out: Dict[str, List[dict]] = {}
    for ds, protos in by_ds.items():
        out[ds] = []
        for protocol, items in sorted(protos.items()):
            labels = cfgs.diff_labels({m.group: (protocol, m.run["model"]) for m in items}, configs)
            out[ds].append({"protocol": protocol, "cards": [_card(m, labels) for m in items]})
    return out


def _card(m: gallery.RunMedia, labels: Dict[str, tuple]) -> dict:
    r = m.run
    label = labels.get(m.group, ("", ""))[0]
    return {"model": r["model"], "label": label, "run_id": r["run_id"], "budget": r["budget"], "seed": r["seed"],
            "config_hash": r.get("config_hash") or "", "checkpoint": r.get("checkpoint") or "",
            "finished": r["finished"] or r["created"], "images": m.images,
            "classes": ", ".join(f"{name} {share:.0%}" for name, share in m.classes)}


def dataset_sections(tables: List[Table], media: List[gallery.RunMedia], out_dir: Path,
                     configs: Dict[str, tuple], snapshots: Optional[List[dict]] = None) -> List[dict]:
    prd = prd_figures(media, out_dir, configs)
    curves = curve_figures(snapshots or [], out_dir, configs)
    cards = gallery_view(media, configs)
    names = sorted({t.dataset for t in tables} | set(prd) | set(cards) | set(curves))
    sections = []
    for ds in names:
        tabs = []
        for t in tables:
            if t.dataset == ds:
                label_rows(t, configs)
                tabs.append({"table": views.table_view(t, PAPER_ROWS), "figure": table_figure(t, out_dir),
                             "steps": steps_figure(t, out_dir)})
        sections.append({"id": views.slug("ds", ds), "title": views.dataset_label(ds), "dataset": ds,
                         "tables": tabs, "prd": prd.get(ds, []), "gallery": cards.get(ds, []),
                         "curves": curves.get(ds, [])})
    return sections


# ---- the page -----------------------------------------------------------------------------------------
def _environment():
    import jinja2
    from markupsafe import Markup
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    # Our own static files, inlined verbatim: trusted markup, not data.
    env.globals["inline"] = lambda name: Markup((PACKAGE_DIR / "static" / name).read_text())
    return env


def render(context: dict) -> str:
    return _environment().get_template("index.html.j2").render(**context)


def _prepare_out(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise LeaderboardError(f"leaderboard folder {out_dir} is a file, not a folder; pass --site with a folder "
                               f"for index.html and img/")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LeaderboardError(f"cannot create the leaderboard folder {out_dir}: part of its path is a file; "
                               f"pass --site with a folder path") from None
    except OSError as e:
        raise LeaderboardError(f"cannot create the leaderboard folder {out_dir}: {e.strerror or e}; pass --site "
                               f"with a writable folder") from None


@contextmanager
def build_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive lock on ``<out>/.build.lock``: one build at a time writes a site (released on exit or death)."""
    try:
        fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise LeaderboardError(f"cannot write the leaderboard to {out_dir}: {e.strerror or e}; pass --site with a "
                               f"writable folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)     # closing the descriptor releases the lock


def build(results_path: Optional[str | os.PathLike] = None, out_dir: Optional[str | os.PathLike] = None) -> Path:
    """Write ``out_dir/index.html`` (and its images) from the store at ``results_path``; return its path.  None:
    $AVADE_RESULTS / $AVADE_SITE, else results/results.sqlite / leaderboard/site (common/defaults.py)."""
    results_path, out_dir = defaults.results_path(results_path), defaults.site_dir(out_dir)
    _prepare_out(out_dir)
    with build_lock(out_dir):
        data = without_trials(load_store(results_path))   # inside the lock: the last build reads every committed row
        study_views = studies.sections(data["studies"], data["trials"], data["claims"], out_dir)
        configs = cfgs.configs_by_group(data["runs"])
        media = gallery.collect_media(data["runs"], data["measurements"], out_dir)
        sections = dataset_sections(group_tables(aggregate(data["measurements"])), media, out_dir, configs,
                                    data["snapshots"])
        html = render({"sections": sections, "claims": views.claim_views(data["claims"]),
                       "reference": views.reference_views(PAPER_ROWS, MODERN_ROWS + FASHION_ROWS), "generated": utcnow(),
                       "unfinished": views.unfinished_views(data["runs"]),
                       "store": str(results_path), "store_exists": results_path.exists(), "first_run": FIRST_RUN,
                       "min_seeds": keys.MIN_SEEDS,
                       "studies": study_views, "counts": {k: len(v) for k, v in data.items()}})
        index = atomic_write(out_dir / "index.html", html)
        gallery.prune_images(out_dir, _linked_images(sections, media) | studies.linked_images(study_views))
    return index


def _linked_images(sections: List[dict], media: List[gallery.RunMedia]) -> set:
    keep = {rel for m in media for rel in m.images.values()}
    for s in sections:
        keep |= {f["src"] for f in s["prd"]} | {f["src"] for f in s.get("curves", [])}
        keep |= {t[k]["src"] for t in s["tables"] for k in ("figure", "steps") if t.get(k)}
    return keep


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = Parser(prog="python -m leaderboard.build", description=__doc__.split("\n\n")[0])
    defaults.add_path_flag(ap, "--results", help=defaults.HELP["--results"] + "; read only")
    defaults.add_path_flag(ap, "--site")
    defaults.add_deprecated(ap, "--out", "--site", dest="site")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)

    def body() -> int:
        results = defaults.results_path(args.results)
        index = build(results, args.site)
        if not results.exists():
            print(f"note: no results store at {results} yet; wrote a page saying so", file=sys.stderr)
        print(index)
        return 0

    return run_main(body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
