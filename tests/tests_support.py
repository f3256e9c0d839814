"""Shared test helpers: tiny configs, the synthetic 'bars' dataset and a replaying conditional model."""
from dataclasses import dataclass

import numpy as np
import torch

from metrics.features import Recipe

#: grey levels of the synthetic images (digits' 17)
LEVELS = 17
#: a classifier recipe of seconds (tests only)
TINY = Recipe(width=8, feature_dim=16, epochs=4, min_steps=40, max_steps=60, batch_size=32)


def bars(n, seed, n_classes=3, size=8, channels=1):
    """Class c: a bright horizontal bar at rows 2c, 2c+1 over faint noise (levels 0..16)."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % n_classes
    x = rng.randint(0, 4, (n, channels, size, size))
    for i, c in enumerate(y):
        x[i, :, 2 * c:2 * c + 2] = rng.randint(12, LEVELS, (channels, 2, size))
    return torch.from_numpy(x.astype(np.uint8)), torch.from_numpy(y)


class Replay:
    """A 'conditional model' whose samples are real images of the requested class (u-space, bin centres);
    ``seen`` records the labels it was asked for."""

    training = False

    def __init__(self, x, y):
        self.by_class = {int(c): x[y == c] for c in torch.unique(y)}
        self.seen = []

    def sample(self, n, labels=None):
        self.seen.append(labels.clone())
        out, used = [], {c: 0 for c in self.by_class}
        for c in labels.tolist():
            pool = self.by_class[c]
            out.append(pool[used[c] % len(pool)])
            used[c] += 1
        return (torch.stack(out).float() + 0.5) / LEVELS

    def eval(self):
        return self

@dataclass
class TinyCfg:
    width: int = 4
    name: str = "tiny"
    scale: float = 1.0
