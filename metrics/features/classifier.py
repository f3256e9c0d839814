"""The small CNN classifier behind the ``domain`` extractor and GAN-train / GAN-test.

Architecture (any resolution >= 1, 1 or 3 channels): stages of two 3x3 conv + BatchNorm + ReLU
followed by 2x2 max-pooling (ceil mode) until the map is at most 4 x 4 (8 px: 1 stage; 28 and 32
px: 3; 64 px: 4), widths ``width * 2^i`` capped at ``4 * width``; one more conv stage; flatten;
a linear layer to ``feature_dim`` units -- the *features*, taken before the ReLU (after it, dead
units made the covariance singular in the prototype: notes/digits-feasibility.md) -- then ReLU and
a linear layer to the class logits.  Inputs are images in [0, 1] mapped to [-1, 1].

Fixed training recipe (:class:`Recipe`): AdamW (lr 2e-3, weight decay 5e-4), cosine decay to 0,
batch 64, ``clip(epochs * batches_per_epoch, min_steps, max_steps)`` steps of reshuffled batches;
initialisation and batch order are seeded.  On digits (1257 images, 8 x 8) that is 600 steps.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ARCH_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    width: int = 32             # channels of the first stage
    feature_dim: int = 64       # penultimate (feature) layer size
    epochs: int = 30            # passes over the training set, before clipping:
    min_steps: int = 300        # ... at least this many optimiser steps
    max_steps: int = 10000      # ... and at most this many
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4

    def steps(self, n: int) -> int:
        per_epoch = max(1, n // self.batch_size)
        return int(min(max(self.epochs * per_epoch, self.min_steps), self.max_steps))

    def key(self) -> dict:
        return {"arch_version": ARCH_VERSION, **asdict(self)}


def _conv(c_in: int, c_out: int) -> list:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class SmallCNN(nn.Module):
    def __init__(self, channels: int, resolution: int, n_classes: int, width: int = 32, feature_dim: int = 64):
        super().__init__()
        layers, c, w, res = [], channels, width, resolution
        while res > 4:
            layers += _conv(c, w) + _conv(w, w) + [nn.MaxPool2d(2, ceil_mode=True)]
            c, w, res = w, min(2 * w, 4 * width), math.ceil(res / 2)
        layers += _conv(c, w)
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.feature = nn.Linear(w * res * res, feature_dim)
        self.head = nn.Linear(feature_dim, n_classes)

    def embed(self, x_unit: torch.Tensor) -> torch.Tensor:
        """Pre-ReLU penultimate features of images in [0, 1]."""
        return self.feature(self.body(x_unit * 2 - 1))

    def forward(self, x_unit: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.embed(x_unit)))


def train_classifier(x_unit: torch.Tensor, y: torch.Tensor, n_classes: int, *, seed: int,
                     recipe: Recipe = Recipe(), device: Optional[torch.device] = None) -> SmallCNN:
    """Train :class:`SmallCNN` on images in [0, 1] with the fixed recipe; returns it in eval mode."""
    device = device or torch.device("cpu")
    x_unit, y = x_unit.float(), torch.as_tensor(y).long()
    if len(x_unit) < 2 or len(x_unit) != len(y):
        raise ValueError(f"classifier training needs >= 2 images with one label each, got {len(x_unit)} "
                         f"images and {len(y)} labels")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(x_unit.shape[1], x_unit.shape[2], n_classes, recipe.width, recipe.feature_dim).to(device)
    steps, bs = recipe.steps(len(x_unit)), min(recipe.batch_size, len(x_unit))
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    net.train()
    order, pos = torch.randperm(len(x_unit), generator=gen), 0
    for _ in range(steps):
        if pos + bs > len(order):
            order, pos = torch.randperm(len(x_unit), generator=gen), 0
        idx = order[pos:pos + bs]
        pos += bs
        loss = F.cross_entropy(net(x_unit[idx].to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: SmallCNN, x_unit: torch.Tensor, batch_size: int = 512) -> Tuple[torch.Tensor, torch.Tensor]:
    """(pre-ReLU features, logits) of images in [0, 1], in batches, float32 on CPU."""
    device = next(net.parameters()).device
    feats, logits = [], []
    for s in range(0, len(x_unit), batch_size):
        f = net.embed(x_unit[s:s + batch_size].float().to(device))
        feats.append(f.cpu())
        logits.append(net.head(F.relu(f)).cpu())
    return torch.cat(feats), torch.cat(logits)


def accuracy(net: SmallCNN, x_unit: torch.Tensor, y, batch_size: int = 512) -> float:
    """Top-1 accuracy in percent."""
    pred = predict(net, x_unit, batch_size)[1].argmax(dim=1)
    return float((pred == torch.as_tensor(np.asarray(y)).long()).double().mean() * 100)
