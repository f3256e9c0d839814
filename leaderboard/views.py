"""Template-ready views of leaderboard tables, paper reference rows and claims.

Every table becomes the same plain structure ``{id, caption, notes, headers, rows}`` whose cells carry
display text, a numeric sort key and a tooltip, so one template macro renders them all and the page's
sort script needs no knowledge of metrics.  Values are formatted here; escaping is left to jinja2
(autoescape), so nothing in this module builds markup.
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import Dict, Iterable, List, Optional

from metrics import keys

from .paper_numbers import PaperRow
from .reference_numbers import CAPTIONS, ReferenceRow
from .tables import Column, Row, Table, is_legacy, metric_rank

METRIC_LABELS = {keys.BPD: "BPD", keys.BPD_CONTENT: "BPD (28x28 content)", keys.BPD_IW: "BPD (IW)", keys.IS: "IS",
                 keys.IS_STD: "IS std",
                 keys.FID: "FID", keys.KID: "KID", keys.PRD_AUC: "PRD AUC", keys.PRD_F8: "F8",
                 keys.PRD_F1_8: "F1/8", keys.PRECISION: "Precision", keys.RECALL: "Recall",
                 keys.DENSITY: "Density", keys.COVERAGE: "Coverage", keys.GAN_TEST: "GAN-test (%)",
                 keys.GAN_TRAIN: "GAN-train (%)", keys.REAL_BASELINE: "real\u2192real (%)",
                 keys.NFE: "NFE", keys.SPEED_VS_GAN: "speed vs GAN (\u00d7)", keys.SAMPLES_PER_S: "samples/s"}
METRIC_LABELS.update({keys.VENDI: "Vendi", keys.MMD: "MMD (\u00d71000)", keys.CMMD: "CMMD", keys.FLD: "FLD",
                      keys.FLD_GAP: "FLD gap", keys.AUTHPCT: "AuthPct (%)", keys.C_T: "C_T", keys.BPD_GAP: "BPD gap"})
#: the memorization columns and what they mean (a note under every table that shows one)
MEMORIZATION_NOTE = ("Memorization: AuthPct = % of samples farther from their nearest training image than that image "
                     "is from its own nearest training neighbour (100 \u2212 AuthPct: the share closer; an exact copy "
                     "is never authentic); FLD gap = 100 (train \u2212 test NLL) under FLD's sample-centred mixture, "
                     "\u2248 0 when the model generalises, \u226a 0 when it copies; C_T \u226a 0: samples closer to "
                     "the training set than held-out data are (> 0: underfitting); BPD gap = held-out \u2212 training "
                     "BPD (> 0: the density fits its training images better). The gallery shows samples beside their "
                     "nearest training images.")
ARROWS = {"higher": ("\u2191", "higher is better"), "lower": ("\u2193", "lower is better")}
DATASET_LABELS = {"cifar10": "CIFAR-10", "stl10": "STL-10", "imagenet32": "ImageNet 32\u00d732",
                  "imagenet64": "ImageNet 64\u00d764", "digits": "digits", "mnist": "MNIST",
                  "fashion-mnist": "Fashion-MNIST"}
DASH = "\u2014"


def slug(*parts: object) -> str:
    """An HTML id that is safe whatever the parts contain."""
    text = "-".join(str(p) for p in parts)
    clean = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
    return f"{clean or 'x'}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def dataset_label(dataset: str) -> str:
    if dataset.startswith("lsun-"):
        return "LSUN " + dataset[5:].replace("_", " ")
    return DATASET_LABELS.get(dataset, dataset)


def decimals(v: float) -> int:
    """Four significant digits, at least one decimal, at most six."""
    if v == 0 or not math.isfinite(v):
        return 3
    return min(6, max(1, 3 - math.floor(math.log10(abs(v)))))


def mean_std_text(mean: float, std: Optional[float]) -> str:
    d = decimals(mean)
    return f"{mean:.{d}f} \u00b1 {DASH if std is None else f'{std:.{d}f}'}"


def scalar_text(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return DASH if v is None else str(v)


def cell(text: str, sort: object = None, title: str = "", cls: str = "", sub: str = "") -> dict:
    """One table cell: display text, numeric/text sort key, tooltip, CSS class, and a second line."""
    return {"text": text, "sort": "" if sort is None else sort, "title": title, "cls": cls, "sub": sub}


def header(label: str, title: str = "", direction: str = "") -> dict:
    arrow, why = ARROWS.get(direction, ("", ""))
    return {"label": label, "arrow": arrow, "title": "; ".join(t for t in (title, why) if t)}


def column_header(col: Column, multi_n: bool) -> dict:
    label = METRIC_LABELS.get(col.metric, col.metric)
    if col.extractor:
        return header(label, f"{col.metric}, extractor {col.extractor}, {col.n_samples} samples", col.direction)
    if multi_n:
        label = f"{label} (n={col.n_samples})"
    return header(label, f"{col.metric}: extractor-independent, held-out n={col.n_samples}", col.direction)


FIXED_HEADERS = [header("Source"), header("Protocol"),
                 header("Model", "one row per configuration; a second line names the config keys in which "
                                 "configurations of the same model differ"), header("Budget"),
                 header("n", "generated samples behind the extractor-dependent columns"),
                 header("Seeds", "number of seeds aggregated (one configuration)"),
                 header("Checkpoint", "which checkpoint each seed evaluated (hover for every seed)")]


def measured_cells(row: Row, columns: List[Column]) -> List[dict]:
    out = []
    n_seeds = len(row.seeds)
    for col in columns:
        c = row.cells.get(col)
        if c is None:
            out.append(cell(""))
            continue
        text = mean_std_text(c.mean, c.std)
        if len(c.seeds) != n_seeds:
            text += f" [{len(c.seeds)} seeds]"
        title = (f"{col.metric} mean \u00b1 sample std (ddof=1) over seeds {', '.join(map(str, c.seeds))}; "
                 f"extractor {c.extractor or 'none'}, n={c.n_samples}; runs: {', '.join(c.run_ids)}")
        out.append(cell(text, c.mean, title, "num"))
    return out


def provenance_cell(row: Row) -> dict:
    p = row.provenance()
    hashes, versions, ext_ids = p["config_hashes"], p["code_versions"], p["extractor_ids"]
    short = f"cfg {hashes[0] if hashes else DASH}" + (f" +{len(hashes) - 1}" if len(hashes) > 1 else "")
    text = f"{short} \u00b7 {versions[0][:10] if versions else DASH} \u00b7 {p['newest'][:10]} \u00b7 " \
           f"{len(p['run_ids'])} run{'s' if len(p['run_ids']) != 1 else ''}"
    group = "legacy row (no group key)" if is_legacy(p["group"]) else p["group"]
    title = (f"config hash: {', '.join(hashes) or DASH}\ncode version: {', '.join(versions) or DASH}\n"
             f"extractor id: {', '.join(ext_ids) or DASH}\ngroup: {group}\n"
             f"newest: {p['newest']}\nrun ids: {', '.join(p['run_ids'])}")
    return cell(text, p["newest"], title, "prov")


def checkpoint_rule(label: str) -> str:
    """'best val_bpd (2.8712)' -> 'best val_bpd'; 'last (step 400)' -> 'last'."""
    return re.sub(r"\s*\(.*\)\s*$", "", label).strip() or label


def checkpoint_cell(row: Row) -> dict:
    per_seed = row.checkpoints
    labels = sorted(set(per_seed.values()))
    if not labels:
        return cell(DASH, title="checkpoint not recorded (a run stored before checkpoints were labelled)")
    rules = sorted({checkpoint_rule(label) for label in labels})
    text = labels[0] if len(labels) == 1 else f"{' / '.join(rules)} ({len(per_seed)} seeds)"
    title = "\n".join(f"seed {s}: {label}" for s, label in per_seed.items())
    return cell(text, " / ".join(rules), title, "ckpt")


#: the store's name of the real-data floor row (protocols.claims.FLOOR; not imported: no torch here)
FLOOR = "real"
FLOOR_TITLE = ("the real-data floor: real train images measured exactly as a model's samples are, against the same "
               "test split and sample count; no model is expected to beat it")


def model_cell(row: Row) -> dict:
    if row.model == FLOOR:
        return cell("real data (floor)", "~", FLOOR_TITLE, "model floor", sub=row.label)
    return cell(row.model, f"{row.model} {row.label}".strip(), row.label_title, "model", sub=row.label)


def measured_row(row: Row, table: Table) -> dict:
    n = str(table.n_samples) if table.extractor else DASH
    fixed = [cell("floor" if row.model == FLOOR else "measured"), cell(row.protocol), model_cell(row),
             cell(table.budget),
             cell(n, table.n_samples if table.extractor else None), cell(str(len(row.seeds)), len(row.seeds)),
             checkpoint_cell(row)]
    return {"cls": "measured", "cells": fixed + measured_cells(row, table.columns) + [provenance_cell(row)],
            "group": row.group}


def paper_value_cell(prow: PaperRow, metric: str) -> dict:
    text = prow.values[metric]
    approx = metric in prow.approx
    if approx:
        text = f"[{text}]"
    text += prow.marks.get(metric, "")
    title = f"{prow.table}, as printed" + ("; [bracketed]: approximated value" if approx else "")
    return cell(text, prow.value(metric), title, "num approx" if approx else "num")


def paper_model_cell(prow: PaperRow) -> dict:
    return cell(prow.model + prow.marks.get("model", ""), title=prow.note, cls="model")


def paper_column_map(prow: PaperRow, columns: List[Column], extractor: str) -> Dict[Column, str]:
    """Which table column each of the paper row's metrics fills (BPD into the extractor-free column)."""
    found: Dict[Column, str] = {}
    for metric in prow.values:
        want = "" if metric in (keys.BPD, keys.BPD_CONTENT, keys.BPD_IW) else extractor
        col = next((c for c in columns if c.metric == metric and c.extractor == want), None)
        if col is not None:
            found[col] = metric
    return found


def paper_row_in_table(prow: PaperRow, table: Table) -> Optional[dict]:
    if prow.dataset != table.dataset or prow.extractor != table.extractor:
        return None
    colmap = paper_column_map(prow, table.columns, table.extractor)
    if not colmap:
        return None
    metric_cells = [paper_value_cell(prow, colmap[c]) if c in colmap else cell("") for c in table.columns]
    fixed = [cell(f"paper {prow.table}", cls="src"), cell(prow.group or DASH), paper_model_cell(prow),
             cell("published"), cell(DASH), cell(DASH), cell(DASH)]
    prov = cell(f"Lucas et al. 2019, {prow.table}", title=prow.note, cls="prov")
    return {"cls": "paper", "cells": fixed + metric_cells + [prov]}


def table_view(table: Table, paper_rows: Iterable[PaperRow]) -> dict:
    ns = {}
    for c in table.columns:
        ns.setdefault(c.metric, set()).add(c.n_samples)
    headers = FIXED_HEADERS + [column_header(c, len(ns[c.metric]) > 1) for c in table.columns] + \
        [header("Provenance", "config hash \u00b7 code version \u00b7 newest date \u00b7 runs (hover for ids)")]
    rows = [measured_row(r, table) for r in table.rows]
    rows += [v for v in (paper_row_in_table(p, table) for p in paper_rows) if v is not None]
    if table.extractor:
        caption = (f"{dataset_label(table.dataset)} \u00b7 extractor {table.extractor}"
                   f"{f' [id {table.extractor_id[:8]}]' if table.extractor_id else ''} \u00b7 budget "
                   f"{table.budget} \u00b7 {table.n_samples} generated samples{accuracy_text(table)}")
        notes = ["Columns without an extractor (BPD, sampling cost) are independent of the extractor."]
    else:
        caption = f"{dataset_label(table.dataset)} \u00b7 extractor-independent metrics \u00b7 budget {table.budget}"
        notes = []
    notes += checkpoint_notes(table) + feature_space_notes(table)
    if any(r["cls"] == "paper" for r in rows):
        notes.append("Rows marked 'paper' are the published numbers (paper budget and sample counts), "
                     "shown for reference.")
    n_paper = sum(r["cls"] == "paper" for r in rows)
    return {"id": slug("t", *table.key), "caption": caption, "notes": notes, "headers": headers, "rows": rows,
            "paper_toggle": n_paper}


def accuracy_text(table: Table) -> str:
    """' · domain net held-out accuracy 97.2%' when the extractor's accuracy was recorded."""
    accs = table.accuracies
    if not accs:
        return ""
    shown = f"{accs[0]:.1f}%" if len(accs) == 1 else f"{accs[0]:.1f}\u2013{accs[-1]:.1f}%"
    if table.extractor == "selfsup":
        return f" \u00b7 self-supervised (denoising autoencoder) net, held-out reconstruction R\u00b2 {shown}"
    return f" \u00b7 {table.extractor} net held-out accuracy {shown}"


def feature_space_notes(table: Table) -> List[str]:
    """Which feature space the table's numbers are in, when it is not the usual one; the memorization legend."""
    notes = []
    ext = table.extractor
    if ext == "selfsup":
        notes.append("Feature space: a self-supervised denoising autoencoder trained on this dataset's own train "
                     "split without labels (the data have none); its numbers compare only with numbers in the same "
                     "space, never with classifier (domain), Inception or DINOv2 values. No IS: it has no classes.")
    elif ext.startswith("dinov2-") or ext.startswith("clip"):
        what = "FD_DINOv2 (FD column)" if ext.startswith("dinov2-") else "CMMD"
        if "-unpublished" in ext:
            notes.append(f"RANDOM OR UNPUBLISHED WEIGHTS: the {ext.split('-')[0]} file behind this table is not the "
                         f"published checkpoint (sha256 differs); its numbers are NOT {what} and compare with nothing "
                         "outside this table.")
        else:
            notes.append(f"Feature space {ext}: the published checkpoint (sha256 verified); the FD column is {what}."
                         if ext.startswith("dinov2-") else f"Feature space {ext}: the published CLIP ViT-L/14@336.")
    if any(c.metric in (keys.AUTHPCT, keys.FLD_GAP, keys.C_T, keys.BPD_GAP) for c in table.columns):
        notes.append(MEMORIZATION_NOTE)
    return notes


def checkpoint_notes(table: Table) -> List[str]:
    rules = {checkpoint_rule(label) for r in table.rows if r.model != FLOOR for label in r.checkpoints.values()}
    if len(rules) > 1:
        return [f"Rows of this table evaluated checkpoints chosen by different rules ({', '.join(sorted(rules))}); "
                "compare them with care."]
    return []


def reference_views(paper_rows: Iterable[PaperRow], modern_rows: Iterable[ReferenceRow] = ()) -> List[dict]:
    """The published numbers, one table per (dataset, resolution, extractor), each row labelled; then the
    later likelihood models' tables, one per dataset."""
    groups: Dict[tuple, List[PaperRow]] = {}
    for p in paper_rows:
        groups.setdefault((p.dataset, p.resolution, p.extractor), []).append(p)
    order = sorted(groups, key=lambda k: (k[0] != "cifar10", k[1], k[0], k[2] != "inception"))
    views = [reference_table(k, groups[k]) for k in order]
    by_dataset: Dict[str, List[ReferenceRow]] = {}
    for r in modern_rows:
        by_dataset.setdefault(r.dataset, []).append(r)
    return views + [modern_table(rows) for rows in by_dataset.values()]


def bound_value_cell(row: ReferenceRow, metric: str) -> dict:
    text = ("\u2264 " if metric in row.bounds else "") + row.values[metric] + row.marks.get(metric, "")
    title = f"{row.source}, as printed" + ("; an upper bound on the NLL" if metric in row.bounds else "")
    return cell(text, row.value(metric), title, "num")


def modern_table(rows: List[ReferenceRow]) -> dict:
    """Later likelihood models on one dataset (reference_numbers.py): one row per model, labelled with its paper
    and table."""
    metrics = sorted({m for r in rows for m in r.values}, key=metric_rank)
    headers = [header("Paper"), header("Model")] + \
        [header(METRIC_LABELS.get(m, m), f"{m} as published", keys.direction(m)) for m in metrics]
    body = [{"cls": "paper", "cells": [cell(r.source, title=r.url, cls="src"),
                                       cell(r.model, title=r.note, cls="model")] +
             [bound_value_cell(r, m) if m in r.values else cell("") for m in metrics]} for r in rows]
    dataset = rows[0].dataset
    notes = [f"Later likelihood models, not from Lucas et al. 2019: held-out bits/dim on {dataset_label(dataset)} "
             "(\u2264: a variational bound) and, where the paper reports them, FID/IS on Inception features. "
             "Each figure was checked at its source or a copy of it (leaderboard/reference_numbers.py)."]
    notes += sorted({r.note for r in rows if r.note})
    caption = CAPTIONS.get(dataset, f"{dataset_label(dataset)}, published likelihoods")
    return {"id": slug("ref-modern", dataset), "caption": caption, "notes": notes, "headers": headers,
            "rows": body, "paper_toggle": 0}


def reference_table(key: tuple, rows: List[PaperRow]) -> dict:
    dataset, res, extractor = key
    metrics = sorted({m for r in rows for m in r.values}, key=metric_rank)
    headers = [header("Table"), header("Group"), header("Model")] + \
        [header(METRIC_LABELS.get(m, m), f"{m} as published", keys.direction(m)) for m in metrics]
    body = [{"cls": "paper", "cells": [cell(r.table, cls="src"), cell(r.group or DASH), paper_model_cell(r)] +
             [paper_value_cell(r, m) if m in r.values else cell("") for m in metrics]} for r in rows]
    label = dataset_label(dataset)
    size = "" if "\u00d7" in label else f" {res}\u00d7{res}"
    caption = f"Published reference ({label}{size}, {extractor.capitalize()})"
    notes = sorted({r.note for r in rows if r.note})
    return {"id": slug("ref", *key), "caption": caption, "notes": notes, "headers": headers, "rows": body,
            "paper_toggle": 0}


def comparison_rows(comparisons: List[dict]) -> List[tuple]:
    """One (label, text) pair per pairwise comparison of the protocols' claim evidence."""
    rows = []
    for c in comparisons:
        arrow = "↑" if c.get("direction") == "higher" else "↓"
        def side(model, values, m):
            vals = ", ".join(scalar_text(v) for v in values or [])
            return f"{model} {scalar_text(m) if m is not None else '—'} [{vals}]"
        floor = c.get("floor_values")
        floor_text = f"; real floor [{', '.join(scalar_text(v) for v in floor)}]" if floor else ""
        reason = f" ({c['reason']})" if c.get("reason") else ""
        rows.append((f"{c.get('metric')} {arrow}: {c.get('better')} vs {c.get('worse')}",
                     f"{side(c.get('better'), c.get('better_values'), c.get('better_mean'))} vs "
                     f"{side(c.get('worse'), c.get('worse_values'), c.get('worse_mean'))}{floor_text} → "
                     f"{c.get('status')}{reason}"))
    return rows


def evidence_rows(evidence: object, prefix: str = "") -> List[tuple]:
    """Flatten claim evidence JSON into (key, value text) pairs for a small table."""
    if (not prefix and isinstance(evidence, dict) and "comparisons" in evidence
            and set(evidence) <= {"comparisons", "why_inconclusive", "source"}
            and all(isinstance(c, dict) for c in evidence["comparisons"])):
        head = [("source", str(evidence["source"]))] if evidence.get("source") else []
        if evidence.get("why_inconclusive"):
            head.append(("why inconclusive", "; ".join(map(str, evidence["why_inconclusive"]))))
        return head + comparison_rows(evidence["comparisons"])
    if isinstance(evidence, dict):
        return [kv for k in sorted(evidence, key=str)
                for kv in evidence_rows(evidence[k], f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(evidence, list) and all(not isinstance(v, (dict, list)) for v in evidence):
        return [(prefix or "value", ", ".join(scalar_text(v) for v in evidence))]
    if isinstance(evidence, list):
        return [kv for i, v in enumerate(evidence) for kv in evidence_rows(v, f"{prefix}[{i}]")]
    return [(prefix or "value", scalar_text(evidence))]


def configs_text(configs: object) -> List[tuple]:
    """The configurations a verdict was evaluated on: [(model, 'cfg <hash>')], sorted by model."""
    if not isinstance(configs, dict) or not configs:
        return []
    return [(str(m), f"cfg {h}" if h else DASH) for m, h in sorted(configs.items(), key=lambda kv: str(kv[0]))]


def claim_views(claims: List[dict]) -> List[dict]:
    """The latest verdict per claim and configuration set (the store keeps one per set), newest first within
    a claim."""
    newest_first = sorted(claims, key=lambda c: (c["created"], c.get("id", 0)), reverse=True)
    order = sorted(newest_first, key=lambda c: (c["dataset"], c["protocol"], c["budget"], c["extractor"],
                                                c["claim_id"]))
    return [{"claim_id": c["claim_id"], "text": c["text"], "status": c["status"],
             "status_cls": "st-" + re.sub(r"[^a-z]+", "-", c["status"].lower()).strip("-"),
             "context": f"{c['protocol']} \u00b7 {dataset_label(c['dataset'])} \u00b7 budget {c['budget']}"
                        + (f" \u00b7 extractor {c['extractor']}" if c["extractor"] else ""),
             "configs": configs_text(c.get("configs")),
             "configs_sort": " ".join(f"{m}={h}" for m, h in configs_text(c.get("configs"))),
             "created": c["created"], "along": along_view(c["evidence"]), "tuning": tuning_text(c["evidence"]),
             "evidence": evidence_rows({k: v for k, v in c["evidence"].items() if k not in NOT_EVIDENCE}
                                       if isinstance(c["evidence"], dict) else c["evidence"])} for c in order]


#: evidence keys shown apart from the evidence table (the trajectory along training, how the sides were tuned)
NOT_EVIDENCE = ("along_training", "tuning", "tuned_alike", "tuning_note")


def tuning_text(evidence: object) -> str:
    """How the two sides of a verdict were tuned (protocols/verdicts.py ``tuning_evidence``): at their presets
    unless a tuning study's confirmation recorded otherwise; unequal tuning is said so."""
    sides = evidence.get("tuning") if isinstance(evidence, dict) else None
    if not isinstance(sides, dict) or not sides:
        return "both sides at their presets (no tuning study)"
    parts = []
    for model, t in sorted(sides.items()):
        if isinstance(t, dict) and t.get("how") == "study":
            parts.append(f"{model}: study {t.get('study')} ({t.get('trials')} trials, {t.get('sampler')}, criterion "
                         f"{t.get('criterion')} on the validation split, pruner {t.get('pruner')}; selected trial "
                         f"#{t.get('selected_trial')}; space {', '.join(t.get('space') or {})})")
        else:
            parts.append(f"{model}: presets")
    alike = "tuned alike" if evidence.get("tuned_alike") else "TUNED UNEQUALLY"
    return f"{alike}: " + "; ".join(parts)


def along_view(evidence: object) -> Optional[dict]:
    """The claim's verdict at each snapshot along training: its one-line trajectory and one badge per snapshot
    (where: training images seen, or the snapshot's fraction of each run when the models saw unequal counts, as
    the driver named it)."""
    along = evidence.get("along_training") if isinstance(evidence, dict) else None
    if not isinstance(along, dict) or not along.get("points"):
        return None
    points = []
    for p in along["points"]:
        where = str(p.get("where") or f"snapshot {p.get('snapshot')}")   # the driver names each point
        gap = f"; gap {scalar_text(p['gap'])}" if isinstance(p.get("gap"), (int, float)) else ""
        points.append({"where": where, "status": p.get("status", ""), "title": f"{where}: {p.get('status')}{gap}",
                       "cls": "st-" + re.sub(r"[^a-z]+", "-", str(p.get("status", "")).lower()).strip("-")})
    return {"summary": str(along.get("summary", "")), "points": points,
            "metrics": ", ".join(map(str, along.get("metrics", [])))}


#: what the status of a run that is not done means (the store's runs table)
UNFINISHED = {
    "interrupted": "its driver stopped (killed, interrupted or an error) before the run finished; rerun the same "
                   "command to continue it",
    "failed": "the cell raised an error; the log is in its run directory",
    "running": "being trained now, or its driver was killed since (the next run marks it interrupted)",
}


def unfinished_views(runs: List[dict]) -> List[dict]:
    """Runs that are not done (their values are in no table), newest first, with what their status means."""
    rows = sorted((r for r in runs if r.get("status") in UNFINISHED), key=lambda r: r.get("created") or "",
                  reverse=True)
    return [{"status": r["status"], "cls": "st-" + r["status"], "meaning": UNFINISHED[r["status"]],
             "model": r["model"], "protocol": r["protocol"], "dataset": dataset_label(r["dataset"]),
             "budget": r["budget"], "seed": r["seed"], "config_hash": r.get("config_hash") or "",
             "created": r.get("created") or "", "finished": r.get("finished") or "", "run_dir": r.get("run_dir") or ""}
            for r in rows]
