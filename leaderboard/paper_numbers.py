"""The paper's published numbers, transcribed as data (Lucas et al., NeurIPS 2019).

Sources, all from ``/work/shared/paper/adaptive-density-estimation-neurips2019.md``:
Table 1 (Sec. 5.1 ablation), Table 2 (Sec. 5.2 refinements), Table 3 (Sec. 5.2 state of the art),
Table 4 (Sec. 5.3 STL-10 / ImageNet / LSUN), Table 5 (App. A.2 LSUN 64 and 128), Table 8 (App. E.1
GAN-test / GAN-train), Table 9a/9b (App. F, scales and blocks of f_psi).

Values are kept as the printed text (so "4.90" stays "4.90"); ``PaperRow.value(metric)`` gives the float.
Bracketed values (the GAN BPD "[7.0]", "[6.9]") are approximations (Table 1 caption) and are listed in
``approx``.  Daggers and other printed marks are kept in ``marks`` with their meaning in ``note``.
Bold (best-in-column) is not transcribed.  A "×" or an empty cell in the paper is simply absent here.

Every row names its dataset (registry spelling, e.g. 'cifar10'), resolution, and the extractor its
quality metrics used: 'inception' for IS/FID, 'classifier' for GAN-train/GAN-test (Table 8 uses a
CIFAR-10 classifier, Shmelkov et al. 2018).  BPD needs no extractor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

from metrics.keys import BPD, FID, GAN_TEST, GAN_TRAIN, IS

CIFAR_NOTE_T3 = "\u2020: computed by the authors using provided weights; \u2021: using provided code to (re)train"
GLOW_NOTE_T4 = "\u2020 as printed in Table 4 (its caption does not define it)"


@dataclass(frozen=True)
class PaperRow:
    table: str                      # e.g. "Table 1", "Table 9a"
    dataset: str                    # registry spelling: cifar10, stl10, imagenet64, lsun-<category>
    resolution: int                 # image side in pixels
    model: str                      # the model's name as printed in the paper
    values: Dict[str, str]          # metric key -> printed number
    extractor: str = "inception"    # extractor of the quality metrics (BPD needs none)
    group: str = ""                 # the table's row group (Table 3: "Hybrid (L)", ...)
    approx: Tuple[str, ...] = ()    # metrics printed in [brackets]: approximated values
    marks: Dict[str, str] = field(default_factory=dict)   # metric -> printed mark (\u2020, \u2021)
    note: str = ""

    def value(self, metric: str) -> float:
        return float(self.values[metric])


def _rows(table, dataset, res, entries, **common):
    """entries: (model, {metric: text}, extra kwargs) -> PaperRow list."""
    return [PaperRow(table, dataset, res, model, vals, **{**common, **kw}) for model, vals, kw in entries]


def _bif(bpd, is_, fid):
    return {k: v for k, v in ((BPD, bpd), (IS, is_), (FID, fid)) if v is not None}


_DAG = "\u2020"
_DDAG = "\u2021"
_T1_NOTE = "\u2020: parameter count decreased by 1.4% to compensate for f_psi"
_APPROX = {"approx": (BPD,), "note": "[bracketed] BPD: approximated (Table 1 caption, Sec. 5)"}

TABLE1 = _rows("Table 1", "cifar10", 32, [
    ("GAN", _bif("7.0", "6.8", "31.4"), _APPROX),
    ("VAE", _bif("4.4", "2.0", "171.0"), {}),
    ("V-ADE", _bif("3.5", "3.0", "112.0"), {"marks": {"model": _DAG}, "note": _T1_NOTE}),
    ("AV-GDE", _bif("4.4", "5.1", "58.6"), {}),
    ("AV-ADE", _bif("3.9", "7.1", "28.0"), {"marks": {"model": _DAG}, "note": _T1_NOTE}),
])

TABLE2 = _rows("Table 2", "cifar10", 32, [
    ("GAN", _bif("7.0", "6.8", "31.4"), _APPROX),
    ("GAN (rd)", _bif("6.9", "7.4", "24.0"), _APPROX),
    ("AV-ADE", _bif("3.9", "7.1", "28.0"), {}),
    ("AV-ADE (rd)", _bif("3.8", "7.5", "26.0"), {}),
    ("AV-ADE (wg, rd)", _bif("3.8", "8.2", "17.2"), {}),
    ("AV-ADE (iaf, rd)", _bif("3.7", "8.1", "18.6"), {}),
    ("AV-ADE (s2)", _bif("3.5", "6.9", "28.9"), {}),
])

_T3 = {"note": CIFAR_NOTE_T3}
TABLE3 = (
    _rows("Table 3", "cifar10", 32, [
        ("AV-ADE (wg, rd)", _bif("3.8", "8.2", "17.2"), {}),
        ("AV-ADE (iaf, rd)", _bif("3.7", "8.1", "18.6"), {}),
        ("AV-ADE (S2)", _bif("3.5", "6.9", "28.9"), {}),
        ("FlowGan(A) [16]", _bif("8.5", "5.8", None), {}),
        ("FlowGan(H) [16]", _bif("4.2", "3.9", None), {}),
    ], group="Hybrid (L)")
    + _rows("Table 3", "cifar10", 32, [
        ("AGE [52]", _bif(None, "5.9", None), {}),
        ("ALI [12]", _bif(None, "5.3", None), {}),
        ("SVAE [6]", _bif(None, "6.8", None), {}),
        ("\u03b1-GAN [41]", _bif(None, "6.8", None), {}),
        ("SVAE-r [6]", _bif(None, "7.0", None), {}),
    ], group="Hybrid (A)")
    + _rows("Table 3", "cifar10", 32, [
        ("mmd-GAN [1]", _bif(None, "7.3", "25.0"), {}),
        ("SNGan [37]", _bif(None, "7.4", "29.3"), {}),
        ("BatchGAN [32]", _bif(None, "7.5", "23.7"), {}),
        ("WGAN-GP [17]", _bif(None, "7.9", None), {}),
        ("SNGAN (R,H)", _bif(None, "8.2", "21.7"), {}),
    ], group="Adversarial")
    + _rows("Table 3", "cifar10", 32, [
        ("Real-NVP [9]", _bif("3.5", "4.5", "56.8"), {"marks": {IS: _DAG, FID: _DAG}, **_T3}),
        ("VAE-IAF [26]", _bif("3.1", "3.8", "73.5"), {"marks": {IS: _DAG, FID: _DAG}, **_T3}),
        ("Pixcnn++ [46]", _bif("2.9", "5.5", None), {}),
        ("Flow++ [20]", _bif("3.1", None, None), {}),
        ("Glow [24]", _bif("3.4", "5.5", "46.8"), {"marks": {IS: _DDAG, FID: _DDAG}, **_T3}),
    ], group="MLE")
)

_T4_REAL_NVP = {"marks": {BPD: _DDAG, IS: _DDAG, FID: _DDAG}, "note": "\u2021 as printed in Table 4"}
TABLE4 = (
    _rows("Table 4", "stl10", 48, [
        ("AV-ADE (wg, wd)", _bif("4.4", "9.4", "44.3"), {}),
        ("AV-ADE (iaf, wd)", _bif("4.0", "8.6", "52.7"), {}),
        ("AV-ADE (s2)", _bif("3.8", "8.6", "52.1"), {}),
        ("Real-NVP", _bif("3.7", "4.8", "103.2"), _T4_REAL_NVP),
        ("BatchGAN", _bif(None, "8.7", "51"), {}),
        ("SNGAN (Res-Hinge)", _bif(None, "9.1", "40.1"), {}),
    ])
    + _rows("Table 4", "imagenet64", 64, [
        ("AV-ADE (wg, wd)", _bif("4.90", "8.5", "45.5"), {}),
        ("Real-NVP", _bif("3.98", None, None), {}),
        ("Glow", _bif("3.81", None, None), {}),
        ("Flow++", _bif("3.69", None, None), {}),
        ("MMD-GAN", _bif(None, "10.9", "36.6"), {}),
    ])
)

# Table 4, LSUN columns: "(BPD/FID)" per model; "x" = not available.  "Ours" is AV-ADE (wg, rd) (caption).
_T4_LSUN = [  # dataset, Real-NVP BPD, Glow (BPD, FID), Ours (BPD, FID)
    ("lsun-bedroom", "2.72", ("2.38", "208.8"), ("3.91", "21.1")),
    ("lsun-tower", "2.81", ("2.46", "214.5"), ("3.95", "15.5")),
    ("lsun-church_outdoor", "3.08", ("2.67", "222.3"), ("4.3", "13.1")),
    ("lsun-classroom", None, None, ("4.6", "20.0")),
    ("lsun-restaurant", None, None, ("4.7", "20.5")),
]


def _table4_lsun():
    rows = []
    for ds, nvp, glow, ours in _T4_LSUN:
        if nvp is not None:
            rows.append(PaperRow("Table 4", ds, 64, "Real-NVP", {BPD: nvp}))
        if glow is not None:
            rows.append(PaperRow("Table 4", ds, 64, "Glow", {BPD: glow[0], FID: glow[1]},
                                 marks={FID: _DAG}, note=GLOW_NOTE_T4))
        rows.append(PaperRow("Table 4", ds, 64, "AV-ADE (wg, rd)", {BPD: ours[0], FID: ours[1]}))
    return rows


# Table 5: category, (BPD, FID) at 64x64, (BPD, FID) at 128x128; AV-ADE (wg, rd).
_T5 = [
    ("bedroom", ("3.92", "21.1"), ("3.0", "70.1")),
    ("tower", ("3.95", "15.5"), ("3.1", "40.8")),
    ("bridge", ("4.1", "25.2"), ("3.4", "64.2")),
    ("kitchen", ("4.0", "15.3"), ("3.1", "45.2")),
    ("church_outdoor", ("4.3", "13.2"), ("3.5", "47.3")),
    ("living_room", ("4.1", "16.7"), ("3.2", "50.6")),
    ("dining_room", ("4.3", "14.6"), ("3.2", "41.0")),
    ("classroom", ("4.6", "20.0"), ("3.5", "59.2")),
    ("conference_room", ("4.2", "21.3"), ("3.1", "61.7")),
    ("restaurant", ("4.7", "20.5"), ("3.8", "60.0")),
]


def _table5():
    rows = []
    for cat, at64, at128 in _T5:
        for res, (bpd, fid) in ((64, at64), (128, at128)):
            rows.append(PaperRow("Table 5", f"lsun-{cat}", res, "AV-ADE (wg, rd)", {BPD: bpd, FID: fid}))
    return rows


TABLE8 = _rows("Table 8", "cifar10", 32, [
    ("GAN", {GAN_TEST: "71.8", GAN_TRAIN: "29.7"}, {}),
    ("AV-ADE", {GAN_TEST: "76.9", GAN_TRAIN: "73.4"}, {}),
    ("DCGAN", {GAN_TEST: "58.2", GAN_TRAIN: "65.0"},
     {"marks": {"model": _DAG}, "note": "\u2020: not directly comparable, a reference point (Table 8 caption)"}),
], extractor="classifier", note="class-conditional models (Table 8)")

TABLE9A = _rows("Table 9a", "cifar10", 32, [
    ("AV-ADE (scales 1, blocks 2)", _bif("3.77", "7.9", "20.1"), {}),
    ("AV-ADE (scales 2, blocks 2)", _bif("3.48", "6.9", "27.7"), {}),
    ("AV-ADE (scales 2, blocks 4)", _bif("3.46", "6.9", "28.9"), {}),
    ("AV-ADE (scales 3, blocks 3)", _bif("3.49", "6.5", "31.7"), {}),
])

TABLE9B = _rows("Table 9b", "cifar10", 32, [
    ("V-ADE (scales 1, blocks 2)", _bif("3.52", "3.0", "112.0"), {}),
    ("V-ADE (scales 2, blocks 2)", _bif("3.41", "4.5", "85.5"), {}),
    ("V-ADE (scales 3, blocks 2)", _bif("3.45", "4.4", "78.7"), {}),
    ("V-ADE (scales 4, blocks 1)", _bif("3.49", "4.1", "82.4"), {}),
])

PAPER_ROWS: Tuple[PaperRow, ...] = tuple(
    TABLE1 + TABLE2 + TABLE3 + TABLE4 + _table4_lsun() + _table5() + TABLE8 + TABLE9A + TABLE9B)
PAPER_TABLES: Tuple[str, ...] = tuple(dict.fromkeys(r.table for r in PAPER_ROWS))
