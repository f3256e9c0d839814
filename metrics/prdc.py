"""Improved precision/recall (Kynkaanniemi et al. 2019) and density/coverage (Naeem et al. 2020).

Same definitions as the ``prdc`` package's ``compute_prdc`` (k = 5 nearest neighbours, the
README's and the paper's recommendation):
* radius of a point = distance to its k-th nearest neighbour in its own set (the (k+1)-th
  smallest distance, counting itself at 0);
* precision = fraction of fakes inside some real ball; recall = fraction of reals inside some
  fake ball; density = (1/k) * mean over fakes of the number of real balls containing it;
  coverage = fraction of reals whose nearest fake lies inside the real's own ball;
* "inside" is the strict ``<`` of prdc (so exact duplicates at distance equal to a radius do not
  count; the <= of stylegan2-ada / torch-fidelity P&R differs only on ties).

Distances.  prdc builds the full N x M matrix with scikit-learn's ``euclidean_distances``:
sqrt(max(0, |x|^2 - 2 x.y + |y|^2)) in float64, with the diagonal of a self-distance matrix set to
0.  Here the same expansion is computed in float64 tiles of at most TILE x TILE (one matmul each,
torch) and reduced on the fly, so 10k x 10k (or 50k x 50k) fits in memory; a self-distance matrix is
symmetric, so only its tiles on and above the diagonal are computed (each serves its rows and its
columns), which saves a third of the work.  ``gram_hook`` sees every Gram tile (real-real,
fake-fake, real-fake) before it becomes distances: KID reuses them (metrics/kid.py, metrics/suite.py).

Exactness.  The expansion leaves round-off (~1e-8) between identical rows, and its sign depends on
the CPU, BLAS and thread count, so ties at radius 0 would fall either way; every pair of identical
rows (within or across the two sets) is therefore set to exactly 0, found by numbering the distinct
rows of the union once (a hash of each row, then ``np.unique`` on the bytes of the rows whose hash
is shared).  Where scikit-learn's arithmetic is itself exact (small-integer or dyadic features,
however duplicated) the result equals ``prdc.compute_prdc`` bit for bit; on continuous data they
agree except for pairs within round-off of a radius (tests/test_metrics_prdc.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

TILE = 2048   # rows and columns per tile of a distance matrix (2048 x 2048 float64 = 32 MiB)

Span = Tuple[int, int]
#: called as hook(kind, rows, cols, gram) with kind "real", "fake" (self tiles, rows <= cols) or "cross"
#: (real rows, fake columns) and gram the float64 tile of inner products; it must not modify the tile
GramHook = Callable[[str, Span, Span, torch.Tensor], None]


def _spans(n: int) -> List[Span]:
    return [(s, min(s + TILE, n)) for s in range(0, n, TILE)]


class Workspace:
    """Reusable tile buffers: a fresh 32 MiB tensor per tile costs page faults that double the elementwise work."""

    def __init__(self, device=None):
        self.device, self._buffers = device, {}

    def get(self, name: str, rows: int, cols: int, dtype=torch.float64) -> torch.Tensor:
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < rows * cols or buf.dtype != dtype:
            buf = self._buffers[name] = torch.empty(max(rows * cols, 1), dtype=dtype, device=self.device)
        return buf[:rows * cols].view(rows, cols)


def _distinct_ids(rows: np.ndarray) -> np.ndarray:
    """Ids of the distinct rows of a float64 array (np.unique on a byte view of each row)."""
    return np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1),
                     return_inverse=True)[1].reshape(-1)


def row_ids(*sets: np.ndarray) -> Tuple[np.ndarray, ...]:
    """For each set, an id per row such that equal ids <=> equal rows, across all sets (-0.0 equals 0.0).

    Rows are hashed (a random linear form of their 64-bit words, mod 2^64), and only rows whose hash
    is shared are compared exactly, so the cost is about one pass over the data."""
    both = np.ascontiguousarray(np.concatenate(sets, dtype=np.float64) + 0.0)   # + 0.0 turns -0.0 into 0.0
    coef = np.random.RandomState(0).randint(0, 2**63, size=both.shape[1], dtype=np.uint64) * np.uint64(2) + 1
    _, group, counts = np.unique(both.view(np.uint64) @ coef, return_inverse=True, return_counts=True)
    ids, shared = np.arange(len(both)), counts[group.reshape(-1)] > 1
    if shared.any():
        ids[shared] = len(both) + _distinct_ids(both[shared])
    return tuple(np.split(ids, np.cumsum([len(s) for s in sets])[:-1]))


@dataclass(frozen=True)
class _Points:
    """Rows of one feature set on the device (float64), their squared norms and row ids (None: all distinct)."""

    x: torch.Tensor
    sq: torch.Tensor
    ids: Optional[torch.Tensor]

    @classmethod
    def of(cls, x: np.ndarray, ids: Optional[np.ndarray], device) -> "_Points":
        t = torch.as_tensor(x, dtype=torch.float64, device=device)
        return cls(t, (t * t).sum(dim=1), None if ids is None else torch.as_tensor(ids, device=device))

    def __len__(self) -> int:
        return self.x.shape[0]

    def rows(self, span: Span) -> "_Points":
        s, e = span
        return _Points(self.x[s:e], self.sq[s:e], None if self.ids is None else self.ids[s:e])


def squared_distances(a: _Points, b: _Points, ws: Optional[Workspace] = None, kind: str = "",
                      span: Tuple[Span, Span] = ((0, 0), (0, 0)), hook: Optional[GramHook] = None) -> torch.Tensor:
    """len(a) x len(b) squared Euclidean distances max(0, |x|^2 - 2 x.y + |y|^2) (scikit-learn's expansion),
    exactly 0 between identical rows; the Gram tile goes to ``hook(kind, *span, gram)`` first when given."""
    out = (ws or Workspace(a.x.device)).get("d2", len(a), len(b))
    if hook is None:
        d2 = torch.addmm(a.sq[:, None], a.x, b.x.T, alpha=-2, out=out)
    else:
        hook(kind, *span, torch.mm(a.x, b.x.T, out=out))
        d2 = out.mul_(-2).add_(a.sq[:, None])
    d2.add_(b.sq[None, :]).clamp_(min=0)
    if a.ids is not None:
        d2.masked_fill_(torch.eq(a.ids[:, None], b.ids[None, :],
                                 out=(ws or Workspace(a.x.device)).get("same", len(a), len(b), torch.bool)), 0)
    return d2


def distances(a: _Points, b: _Points) -> torch.Tensor:
    """len(a) x len(b) Euclidean distances: the square roots of :func:`squared_distances`."""
    return squared_distances(a, b).sqrt_()


def sqrt_thresholds(r: torch.Tensor) -> torch.Tensor:
    """The smallest t with fl(sqrt(t)) >= r, elementwise: sqrt is monotone and correctly rounded, so
    fl(sqrt(d2)) < r exactly when d2 < t, and distances compare with radii without a square root per entry."""
    t = r * r
    for _ in range(4):                   # r * r is within an ulp or two of the boundary
        t = torch.where(torch.sqrt(t) < r, torch.nextafter(t, torch.full_like(t, float("inf"))), t)
    for _ in range(4):
        lower = torch.nextafter(t, torch.full_like(t, -float("inf")))
        t = torch.where(torch.sqrt(lower) >= r, lower, t)
    below = torch.nextafter(t, torch.zeros_like(t))
    if not bool(((torch.sqrt(t) >= r) & ((t == 0) | (torch.sqrt(below) < r))).all()):
        raise ArithmeticError("sqrt_thresholds did not converge")   # cannot happen with IEEE arithmetic
    return t


def _tile(a: _Points, b: _Points, kind: str, rows: Span, cols: Span, hook: Optional[GramHook],
          ws: Workspace) -> torch.Tensor:
    return squared_distances(a.rows(rows), b.rows(cols), ws, kind, (rows, cols), hook)


def _keep_smallest(best: torch.Tensor, start: int, d: torch.Tensor) -> None:
    """Merge each row of ``d`` into the running sorted k+1 smallest values of rows start.. of ``best``."""
    rows = best[start:start + d.shape[0]]
    new = torch.topk(d, min(best.shape[1], d.shape[1]), dim=1, largest=False).values
    rows.copy_(torch.topk(torch.cat([rows, new], dim=1), best.shape[1], dim=1, largest=False).values)


def nearest_neighbour_radii(p: _Points, k: int, kind: str = "real", hook: Optional[GramHook] = None,
                            ws: Optional[Workspace] = None) -> torch.Tensor:
    """Distance of each row to its k-th nearest neighbour among the other rows of its set (the square
    root of the (k+1)-th smallest squared distance, self at 0: sqrt is monotone, so the same element)."""
    if len(p) <= k:
        raise ValueError(f"need more than k={k} points per set for k-NN radii, got {len(p)}")
    ws = ws or Workspace(p.x.device)
    best = torch.full((len(p), k + 1), float("inf"), dtype=torch.float64, device=p.x.device)
    spans = _spans(len(p))
    for i, rows in enumerate(spans):
        for cols in spans[i:]:                           # upper tiles: d(i, j) serves row i and row j
            d2 = _tile(p, p, kind, rows, cols, hook, ws)
            if rows == cols:
                d2.diagonal().zero_()                    # each row to itself
            _keep_smallest(best, rows[0], d2)
            if rows != cols:
                _keep_smallest(best, cols[0], ws.get("transposed", d2.shape[1], d2.shape[0]).copy_(d2.T))
    return best[:, k].sqrt()


def _points(real: np.ndarray, fake: np.ndarray, device) -> Tuple[_Points, _Points]:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1] or real.shape[1] == 0:
        raise ValueError(f"prdc needs two N x D feature arrays of equal D, got {real.shape} and {fake.shape}")
    ids = row_ids(real, fake)
    if np.unique(np.concatenate(ids)).size == len(real) + len(fake):
        ids = (None, None)                            # all rows distinct: only self-distances are 0
    return _Points.of(real, ids[0], device), _Points.of(fake, ids[1], device)


def compute_prdc(real_features, fake_features, nearest_k: int = 5, device: Optional[torch.device | str] = None,
                 gram_hook: Optional[GramHook] = None) -> Dict[str, float]:
    """{'precision', 'recall', 'density', 'coverage'} of fake against real features."""
    real, fake = _points(np.asarray(real_features, np.float64), np.asarray(fake_features, np.float64), device)
    for p in (real, fake):
        if len(p) <= nearest_k:
            raise ValueError(f"need more than k={nearest_k} points per set for k-NN radii, got {len(p)}")
    ws = Workspace(real.x.device)
    r_real = nearest_neighbour_radii(real, nearest_k, "real", gram_hook, ws)
    r_fake = nearest_neighbour_radii(fake, nearest_k, "fake", gram_hook, ws)
    density_count = torch.zeros(len(fake), dtype=torch.int32, device=real.x.device)
    real_in_fake = torch.zeros(len(real), dtype=torch.bool, device=real.x.device)
    nearest = torch.full((len(real),), float("inf"), dtype=torch.float64, device=real.x.device)
    t_real, t_fake = sqrt_thresholds(r_real), sqrt_thresholds(r_fake)     # d < r  <=>  d^2 < t
    for rows in _spans(len(real)):
        for cols in _spans(len(fake)):
            d2 = _tile(real, fake, "cross", rows, cols, gram_hook, ws)
            inside = ws.get("inside", *d2.shape, torch.bool)
            density_count[cols[0]:cols[1]] += torch.lt(d2, t_real[rows[0]:rows[1], None], out=inside).sum(
                dim=0, dtype=torch.int32)
            real_in_fake[rows[0]:rows[1]] |= torch.lt(d2, t_fake[None, cols[0]:cols[1]], out=inside).any(dim=1)
            torch.minimum(nearest[rows[0]:rows[1]], d2.amin(dim=1), out=nearest[rows[0]:rows[1]])
    n_real, n_fake = len(real), len(fake)   # counts / n: exact integer sums, one rounding, as numpy's mean
    return dict(precision=(density_count > 0).sum().item() / n_fake, recall=real_in_fake.sum().item() / n_real,
                density=(1.0 / nearest_k) * (density_count.sum().item() / n_fake),
                coverage=(nearest.sqrt() < r_real).sum().item() / n_real)
