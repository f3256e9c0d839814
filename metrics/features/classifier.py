"""The small classifiers behind the ``domain`` extractor and GAN-train / GAN-test.

Two architectures, chosen by :class:`Recipe` ``arch`` (any resolution >= 1, 1 or 3 channels; inputs
are images in [0, 1] mapped to [-1, 1]); both end in a linear layer to ``feature_dim`` units -- the
*features*, taken before the ReLU (after it, dead units made the covariance singular in the
prototype: notes/digits-feasibility.md) -- then ReLU and a linear layer to the class logits.

* ``"cnn"`` (:class:`SmallCNN`, the domain extractor's): stages of two 3x3 conv + BatchNorm + ReLU
  followed by 2x2 max-pooling (ceil mode) until the map is at most 4 x 4 (8 px: 1 stage; 28 and 32
  px: 3; 64 px: 4), widths ``width * 2^i`` capped at ``4 * width``; one more conv stage; flatten.
* ``"resnet"`` (:class:`SmallResNet`, GAN-train / GAN-test's, the kind Shmelkov et al. used): a 3x3
  conv stem of ``width`` channels (stride 2 above 16 px, as ImageNet ResNets downsample in the stem:
  32 px maps are then 16/8/4 px in the three stages; 3.5x cheaper per step than stride 1, measured
  20 vs 70 ms), then three stages of ``blocks`` basic residual blocks (two 3x3 conv + BN, identity or
  1x1-conv shortcut; the last BN of each block starts at zero) at ``width``, ``2 width``, ``4 width``
  channels, the 2nd and 3rd entered with stride 2; global average pool.  ``blocks=1`` is a ResNet-8
  (stem + 6 convs in blocks + linear), ``blocks=2`` a ResNet-14.

Training (:func:`train_classifier`): AdamW (weight decay ``weight_decay``), a linear warm-up over
the first ``warmup`` fraction of the steps to ``lr`` then cosine decay to 0, batches of
``batch_size`` reshuffled every epoch, ``clip(epochs * batches_per_epoch, min_steps, max_steps)``
steps; channels-last memory format on CPU (same weights up to float rounding, ~1.3x faster);
initialisation and batch order are seeded.  A tqdm bar on stderr names what trains and on how many
images (in a log file: a line every 3 s plus one step); ``progress=False`` silences it.

Recipes, one per architecture for every dataset (the step count scales with the data as above):
``Recipe()`` (domain extractor): cnn, width 16, batch 64, AdamW lr 2e-3, cosine, no warm-up, 30 epochs
clipped to [300, 2500] steps (digits: 570; Fashion-MNIST: 2500 = 2.9 epochs).  :data:`RESNET_RECIPE`
(GAN-train / GAN-test): resnet, width 16, 2 blocks per stage (ResNet-14), lr 5e-3, 5% warm-up, 30
epochs clipped to [300, 4000] steps (digits: 570; Fashion-MNIST: 4000 = 4.7 epochs).

MEASUREMENTS (torch 2.14 CPU, seed 0; Fashion-MNIST: the 55k train split, accuracy on the 10k test
split; digits: 1257 / 360).  The machine (2 cores) was shared with other jobs, load average 3-7, so
times are the process's CPU time with ``torch.set_num_threads(1)`` -- what one idle core would take;
with 2 threads under that load steps were 3-5x *slower* (contention), so the idle 2-thread time could
not be measured and is taken as at most the 1-thread time.  Per-step costs are minima over interleaved
rounds (batch 64, 32 x 32, 1 thread).

===============================================  =====  =======  =======  ========  ========================
recipe (Fashion-MNIST)                           steps  ms/step  train s  test acc  digits acc (seeds 0/1/2)
===============================================  =====  =======  =======  ========  ========================
cnn w32 (the v1 recipe)                          10000  168      ~1700    --        --
cnn w16, lr 2e-3                                 3000   56       168      93.01     --
**cnn w16, lr 2e-3: Recipe()**                   2500   ~55      142 [1]  92.79     99.72/99.72/99.44
resnet-8 w16, stride-1 stem, lr 2e-3, wu 3%      2200   74       162      89.20     99.72
resnet-8 w16, stride-1 stem, lr 5e-3, wu 5%      2200   72       159      90.02     --
resnet-8 w32, stride-2 stem, lr 5e-3, wu 5%      2700   57       154      91.74     --
**resnet-14 w16, stride-2 stem: RESNET_RECIPE**  4000   36       145 [2]  92.17     99.72/99.44/99.72
===============================================  =====  =======  =======  ========  ========================

[1] the whole ``DomainExtractor.fit_or_load`` (training, feature scale over 10k images, accuracy over
10k): 141.6 s CPU (205 s wall under load 3-4).  [2] training only (146.7 s wall); the passes after it
add ~5 s.  Digits: seeds 0/1/2, 2.4 s (cnn) and 8.8 s (resnet) of training.
channels_last vs contiguous, per training step: cnn w16 53 vs 74 ms (1.4x), resnet-8 w16 stride 1 71
vs 93 ms (1.3x); batch 128 costs about the same per image as 64 (cnn 0.78 vs 0.82 ms), so 64 stays.
Inference is fastest in batches of 16-128 (0.27-0.54 ms per image; 0.48-0.95 ms at 512-1024), hence 128.
The ResNet is not the domain extractor's: at about equal time it is 0.6 points less accurate (92.17 in
145 s of training vs the cnn's 92.79 in 142 s for the whole fit, 93.01 in 168 s).  For Table 8 its
real-to-real baseline on Fashion-MNIST is 92.17% (< 100%: room between models); on digits both nets
make 1-2 errors in 360.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.progress import progress_bar

ARCH_VERSION = 2   # 1: SmallCNN only, constant-width recipe; 2: arch / blocks / warm-up / channels-last recipe

ARCHS = ("cnn", "resnet")


@dataclass(frozen=True)
class Recipe:
    arch: str = "cnn"           # "cnn" (SmallCNN) or "resnet" (SmallResNet)
    width: int = 16             # channels of the first stage
    blocks: int = 1             # resnet only: basic blocks per stage
    feature_dim: int = 64       # penultimate (feature) layer size
    epochs: int = 30            # passes over the training set, before clipping:
    min_steps: int = 300        # ... at least this many optimiser steps
    max_steps: int = 2500       # ... and at most this many
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup: float = 0.0         # fraction of the steps with a linear warm-up to ``lr``
    channels_last: bool = True  # memory format of the training and inference passes

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown classifier arch {self.arch!r}; valid: {', '.join(ARCHS)}")

    def steps(self, n: int) -> int:
        per_epoch = max(1, n // self.batch_size)
        return int(min(max(self.epochs * per_epoch, self.min_steps), self.max_steps))

    def key(self) -> dict:
        return {"arch_version": ARCH_VERSION, **asdict(self)}

    def build(self, channels: int, resolution: int, n_classes: int) -> nn.Module:
        """The untrained network of this recipe (initialised from torch's global RNG)."""
        if self.arch == "resnet":
            net = SmallResNet(channels, resolution, n_classes, self.width, self.feature_dim, self.blocks)
        else:
            net = SmallCNN(channels, resolution, n_classes, self.width, self.feature_dim)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        net = net.to(memory_format=fmt)
        net._memory_format = fmt
        return net


#: GAN-train / GAN-test's classifier (metrics/gan_train_test.py); the domain extractor's is ``Recipe()``.
RESNET_RECIPE = Recipe(arch="resnet", width=16, blocks=2, max_steps=4000, lr=5e-3, warmup=0.05)


def _conv(c_in: int, c_out: int) -> list:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class _Classifier(nn.Module):
    """``body`` (images in [-1, 1] -> flat vector), ``feature`` (linear, pre-ReLU features), ``head``."""

    def embed(self, x_unit: torch.Tensor) -> torch.Tensor:
        """Pre-ReLU penultimate features of images in [0, 1]."""
        return self.feature(self.body(x_unit * 2 - 1))

    def forward(self, x_unit: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.embed(x_unit)))


class SmallCNN(_Classifier):
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


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with a residual connection (He et al. 2016); the last BN starts at zero."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        nn.init.zeros_(self.bn2.weight)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(_Classifier):
    """CIFAR-style ResNet-(6 blocks + 2): stem (stride 2 above 16 px), 3 stages (width, 2w, 4w; stride 2 into
    the 2nd and 3rd), global average pool."""

    def __init__(self, channels: int, resolution: int, n_classes: int, width: int = 16, feature_dim: int = 64,
                 blocks: int = 1):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"a ResNet needs >= 1 block per stage, got {blocks}")
        stem_stride = 2 if resolution > 16 else 1
        layers = [nn.Conv2d(channels, width, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        c = width
        for stage in range(3):
            w = width * 2 ** stage
            for b in range(blocks):
                layers.append(BasicBlock(c, w, 2 if stage > 0 and b == 0 else 1))
                c = w
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature = nn.Linear(c, feature_dim)
        self.head = nn.Linear(feature_dim, n_classes)


# ---- training and inference ----------------------------------------------------------------------------
def _memory_format(net: nn.Module) -> torch.memory_format:
    return getattr(net, "_memory_format", torch.contiguous_format)


def train_classifier(x_unit: torch.Tensor, y: torch.Tensor, n_classes: int, *, seed: int,
                     recipe: Recipe = Recipe(), device: Optional[torch.device] = None, progress: bool = True,
                     desc: Optional[str] = None) -> nn.Module:
    """Train ``recipe``'s network on images in [0, 1]; returns it in eval mode.  ``desc`` names the bar
    (default: the architecture and the number of images)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    x_unit, y = x_unit.float(), torch.as_tensor(y).long()
    if len(x_unit) < 2 or len(x_unit) != len(y):
        raise ValueError(f"classifier training needs >= 2 images with one label each, got {len(x_unit)} "
                         f"images and {len(y)} labels")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = recipe.build(x_unit.shape[1], x_unit.shape[2], n_classes).to(device)
    fmt = _memory_format(net)
    steps, bs = recipe.steps(len(x_unit)), min(recipe.batch_size, len(x_unit))
    warm = max(1, round(recipe.warmup * steps)) if recipe.warmup > 0 else 0

    def lr_factor(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))

    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    net.train()
    order, pos = torch.randperm(len(x_unit), generator=gen), 0
    desc = desc or f"training {recipe.arch} classifier on {len(x_unit)} images"
    with progress_bar(steps, desc, enabled=progress, unit="step") as bar:
        for s in range(steps):
            if pos + bs > len(order):
                order, pos = torch.randperm(len(x_unit), generator=gen), 0
            idx = order[pos:pos + bs]
            pos += bs
            xb = x_unit[idx].to(device).contiguous(memory_format=fmt)
            loss = F.cross_entropy(net(xb), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress and (s % 50 == 0 or s == steps - 1):
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update(1)
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, x_unit: torch.Tensor, batch_size: int = 512, *, progress: bool = True,
            desc: str = "classifying images") -> Tuple[torch.Tensor, torch.Tensor]:
    """(pre-ReLU features, logits) of images in [0, 1], in batches, float32 on CPU.  The bar (``progress``)
    appears only when the loop is still running after 3 s."""
    device = next(net.parameters()).device
    fmt = _memory_format(net)
    feats, logits = [], []
    with progress_bar(len(x_unit), desc, enabled=progress, unit="img", delay=3.0) as bar:
        for s in range(0, len(x_unit), batch_size):
            xb = x_unit[s:s + batch_size].float().to(device).contiguous(memory_format=fmt)
            f = net.embed(xb)
            feats.append(f.cpu())
            logits.append(net.head(F.relu(f)).cpu())
            bar.update(len(xb))
    return torch.cat(feats), torch.cat(logits)


def accuracy(net: nn.Module, x_unit: torch.Tensor, y, batch_size: int = 512, *, progress: bool = True,
             desc: str = "measuring accuracy") -> float:
    """Top-1 accuracy in percent."""
    pred = predict(net, x_unit, batch_size, progress=progress, desc=desc)[1].argmax(dim=1)
    return float((pred == torch.as_tensor(np.asarray(y)).long()).double().mean() * 100)
