"""Per-configuration media for the leaderboard: sample grids, reconstructions (paper Fig. 5 and 21) and PRD
curves (paper Fig. 19), taken from the newest finished run of each configuration (``group_key``).

Files read from ``<run_dir>``: ``samples.png``, ``reconstructions.png``, ``prd_curve.json``, ``prd.png``;
absent files are simply not shown.  Images are copied (``common.io.atomic_write``) into ``<out>/img/`` under
names derived from a hash of the run id (never from model names, which are arbitrary text), so the page links
them relatively and opens from disk.  A relative ``run_dir`` is resolved against the current working directory.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from common.io import atomic_write
from metrics import keys

from .figures import load_prd_curve
from .tables import group_of

IMG_DIR = "img"
MEDIA_FILES = {"samples": "samples.png", "reconstructions": "reconstructions.png", "prd": "prd.png",
               "by_class": "samples_by_class.png", "nearest": "nearest_train.png"}
PRD_CURVE_FILE = "prd_curve.json"
CLASS_FILE = "samples_by_class.json"     # the class gallery's rows: class names, counts and shares
PRD_METRICS = (keys.PRD_AUC, keys.PRD_F8, keys.PRD_F1_8)


@dataclass
class RunMedia:
    run: dict
    group: str
    images: Dict[str, str] = field(default_factory=dict)     # kind -> path relative to the out dir
    curve: Optional[Tuple[List[float], List[float]]] = None  # (precision, recall)
    prd_extractor: Tuple[str, str] = ("", "")                # (extractor, extractor id) of its PRD measurements
    classes: List[Tuple[str, float]] = field(default_factory=list)  # the class gallery's rows: (name, share)


def media_name(*parts: str) -> str:
    """A file name under img/ that depends only on a hash of its parts."""
    digest = hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]
    return f"{IMG_DIR}/{parts[0]}-{digest}.png"


def newest_done_runs(runs: List[dict]) -> List[dict]:
    """The newest run with status 'done' per configuration (group): latest finish time, then the latest start
    (``seq``, the store's insertion order, breaks ties between equal timestamps)."""
    def stamp(r: dict) -> tuple:
        return (r["finished"] or r["created"], r.get("seq", 0))

    best: Dict[str, dict] = {}
    for r in runs:
        g = group_of(r)
        if r["status"] == "done" and (g not in best or stamp(r) >= stamp(best[g])):
            best[g] = r
    return sorted(best.values(), key=lambda r: (r["dataset"], r["protocol"], r["model"], group_of(r)))


def _copy(src: Path, out_dir: Path, rel: str) -> None:
    with open(src, "rb") as f:
        atomic_write(out_dir / rel, lambda dst: shutil.copyfileobj(f, dst))


def _prd_extractor(run_id: str, extractors: Dict[str, set]) -> Tuple[str, str]:
    found = extractors.get(run_id, set())
    return next(iter(found)) if len(found) == 1 else ("", "")


def collect_media(runs: List[dict], measurements: List[dict], out_dir: Path) -> List[RunMedia]:
    """Copy the images of the newest finished run of each configuration into out_dir/img and read its PRD
    curve."""
    (out_dir / IMG_DIR).mkdir(parents=True, exist_ok=True)
    extractors: Dict[str, set] = {}
    for m in measurements:
        if m["metric"] in PRD_METRICS and m["extractor"]:
            extractors.setdefault(m["run_id"], set()).add((m["extractor"], m.get("extractor_id") or ""))
    media = []
    for run in newest_done_runs(runs):
        item = RunMedia(run, group_of(run), prd_extractor=_prd_extractor(run["run_id"], extractors))
        run_dir = Path(run["run_dir"]) if run["run_dir"] else None
        if run_dir is not None and run_dir.is_dir():
            for kind, fname in MEDIA_FILES.items():
                if (run_dir / fname).is_file():
                    item.images[kind] = media_name(kind, run["run_id"])
                    _copy(run_dir / fname, out_dir, item.images[kind])
            if (run_dir / PRD_CURVE_FILE).is_file():
                item.curve = load_prd_curve(run_dir / PRD_CURVE_FILE)
            if "by_class" in item.images:
                item.classes = load_class_rows(run_dir / CLASS_FILE)
        media.append(item)
    return media


def prune_images(out_dir: Path, keep: set) -> None:
    """Remove images under out_dir/img that this build does not link (builds hold the out dir's lock, so no
    other build is writing there)."""
    for p in (out_dir / IMG_DIR).glob("*.png"):
        if f"{IMG_DIR}/{p.name}" not in keep:
            p.unlink(missing_ok=True)


def load_class_rows(path: Path) -> List[Tuple[str, float]]:
    """(class name, share of the samples) per row of a class gallery; [] when the file is missing or malformed
    (the image is still shown, without row labels)."""
    try:
        data = json.loads(path.read_text())
        rows = list(zip(data["class_names"], data["shares"]))
        return [(str(n), float(v)) for n, v in rows if isinstance(v, (int, float))]
    except (OSError, ValueError, KeyError, TypeError):
        return []
