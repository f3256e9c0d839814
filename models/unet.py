"""The epsilon-prediction U-Net of the diffusion baseline (:mod:`models.vdm`).

Layout of VDM's score network (Kingma et al. 2021, Appendix B; google-research/vdm ``model_vdm.py``,
``ScoreUNet``), generalised with DDPM's optional downsampling levels (Ho et al. 2020):

* a conditioning vector from a scalar per image (VDM: gamma_t rescaled to [0, 1]): a sinusoidal
  embedding of ``1000 * s`` (Fairseq/tensor2tensor convention), then two dense layers with swish, to
  ``4 * ch`` features;
* ``conv_in``; per level ``blocks`` residual blocks (``ch * ch_mult[level]`` channels) whose outputs are
  kept for the skip connections, a stride-2 conv between levels; the middle: residual block, single-head
  self-attention (optional), residual block; per level on the way up ``blocks + 1`` residual blocks that
  each take one kept activation concatenated to their input, nearest-neighbour upsampling + conv between
  levels; GroupNorm, swish and a zero-initialised ``conv_out``.
* Residual block: GroupNorm, swish, conv3x3, + dense(conditioning) (zero-initialised, no bias), GroupNorm,
  swish, dropout, conv3x3 (zero-initialised), + the input (1x1 conv where the width changes).  With the
  zero initialisations every block starts as the identity and the network's output is exactly 0.

``ch_mult=(1,)`` (no downsampling) with ``blocks=32``, ``ch=128`` and middle attention is VDM's CIFAR-10
network.  GroupNorm uses 32 groups (Flax's default) where that leaves at least 4 channels per group, fewer
in narrower networks (a 1-channel group would normalise away everything at the lowest resolutions).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "ResBlock", "AttnBlock", "timestep_embedding"]


def _groups(ch: int, most: int = 32, least_per_group: int = 4) -> int:
    """GroupNorm groups: 32 (Flax's default, VDM) where the width allows at least 4 channels per group."""
    g = max(1, min(most, ch // least_per_group))
    while ch % g:
        g -= 1
    return g


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(s: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (N, dim) of scalars ``s`` (N,) scaled by 1000 (VDM / Fairseq convention)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=s.device, dtype=s.dtype) / max(half - 1, 1))
    arg = 1000.0 * s[:, None] * freq[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.cond = _zero(nn.Linear(emb_dim, out_ch, bias=False))
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.cond(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual, zero-initialised output projection."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(out.transpose(1, 2).reshape(n, c, h, w))


class UNet(nn.Module):
    """eps_hat = UNet(h, s): ``h`` the network input (N, in_ch, R, R), ``s`` (N,) the conditioning scalar."""

    def __init__(self, in_ch: int, out_ch: int, resolution: int, *, ch: int = 128, blocks: int = 32,
                 ch_mult: Sequence[int] = (1,), attn_mid: bool = True, dropout: float = 0.0):
        super().__init__()
        if ch < 1 or blocks < 0 or not ch_mult or min(ch_mult) < 1:
            raise ValueError(f"UNet needs ch >= 1, blocks >= 0 and positive ch_mult, got {ch}, {blocks}, {ch_mult}")
        if resolution % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"{len(ch_mult)} U-Net levels halve the resolution {len(ch_mult) - 1} times; "
                             f"{resolution} is not divisible by {2 ** (len(ch_mult) - 1)}: shorten ch_mult")
        self.ch = ch
        emb = 4 * ch
        self.emb = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.down, kept, cur = nn.ModuleList(), [ch], ch
        for i, mult in enumerate(ch_mult):
            for _ in range(blocks):
                self.down.append(ResBlock(cur, ch * mult, emb, dropout))
                cur = ch * mult
                kept.append(cur)
            if i < len(ch_mult) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                kept.append(cur)
        self.mid = nn.ModuleList([ResBlock(cur, cur, emb, dropout),
                                  AttnBlock(cur) if attn_mid else nn.Identity(),
                                  ResBlock(cur, cur, emb, dropout)])
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(blocks + 1):
                self.up.append(ResBlock(cur + kept.pop(), ch * mult, emb, dropout))
                cur = ch * mult
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(cur, cur, 3, padding=1)))
        assert not kept
        self.norm_out = nn.GroupNorm(_groups(cur), cur)
        self.conv_out = _zero(nn.Conv2d(cur, out_ch, 3, padding=1))

    @staticmethod
    def _run(block: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return block(h, emb) if isinstance(block, ResBlock) else block(h)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        emb = self.emb(timestep_embedding(s.to(h.dtype), self.ch))
        h = self.conv_in(h)
        kept = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            kept.append(h)
        for block in self.mid:
            h = self._run(block, h, emb)
        for block in self.up:
            h = block(torch.cat([h, kept.pop()], dim=1), emb) if isinstance(block, ResBlock) else block(h)
        return self.conv_out(F.silu(self.norm_out(h)))
