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
Unlike prdc, which builds the full N x M distance matrix with scikit-learn, the distances are
computed in float64 blocks of rows with ``torch.cdist`` and reduced on the fly, so 10k x 10k (or
50k x 50k) fits in memory; self-distances are set to exactly 0 as scikit-learn does.  Agrees with
``prdc.compute_prdc`` exactly on float64 inputs (tests/test_metrics_prdc.py).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

BLOCK_ELEMENTS = 1 << 24   # distances per block (128 MiB in float64)


def _rows_per_block(n_cols: int) -> int:
    return max(1, BLOCK_ELEMENTS // max(1, n_cols))


def nearest_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest neighbour among the other rows."""
    if x.shape[0] <= k:
        raise ValueError(f"need more than k={k} points per set for k-NN radii, got {x.shape[0]}")
    step, out = _rows_per_block(x.shape[0]), []
    for s in range(0, x.shape[0], step):
        d = torch.cdist(x[s:s + step], x)
        idx = torch.arange(d.shape[0], device=x.device)
        d[idx, idx + s] = 0.0
        out.append(torch.topk(d, k + 1, dim=1, largest=False).values[:, -1])   # (k+1)-th smallest
    return torch.cat(out)


def compute_prdc(real_features, fake_features, nearest_k: int = 5,
                 device: Optional[torch.device | str] = None) -> Dict[str, float]:
    """{'precision', 'recall', 'density', 'coverage'} of fake against real features."""
    real = torch.as_tensor(np.asarray(real_features, dtype=np.float64), device=device)
    fake = torch.as_tensor(np.asarray(fake_features, dtype=np.float64), device=device)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"prdc needs two N x D feature arrays of equal D, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    r_real, r_fake = nearest_neighbour_radii(real, nearest_k), nearest_neighbour_radii(fake, nearest_k)
    fake_in_real = torch.zeros(fake.shape[0], dtype=torch.bool, device=real.device)
    density_count = torch.zeros(fake.shape[0], dtype=torch.float64, device=real.device)
    real_in_fake = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    covered = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    step = _rows_per_block(fake.shape[0])
    for s in range(0, real.shape[0], step):
        d = torch.cdist(real[s:s + step], fake)
        inside = d < r_real[s:s + step, None]
        fake_in_real |= inside.any(dim=0)
        density_count += inside.sum(dim=0)
        real_in_fake[s:s + step] = (d < r_fake[None, :]).any(dim=1)
        covered[s:s + step] = d.min(dim=1).values < r_real[s:s + step]
    return dict(precision=fake_in_real.double().mean().item(), recall=real_in_fake.double().mean().item(),
                density=(1.0 / nearest_k) * density_count.mean().item(), coverage=covered.double().mean().item())
