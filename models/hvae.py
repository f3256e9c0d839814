"""Top-down hierarchical VAE (paper Appendix B.1) with an optional IAF posterior (Appendix B.2).

Generative model (the SNGAN standard-CNN generator of :mod:`models.nets` with latents merged in,
spec section 3.2, modelled on openai/iaf ``IAFLayer.down``): ``z0 ~ N(0, I_{z_dim})``; a dense
layer gives ``h_4``; at every feature size r = 4, 8, ..., res/2 a WN conv head on ``h_r`` gives the
prior ``p(z_r | z_>r) = N(pm, e^{2 pls})`` over ``latent_ch`` (paper: 32) channels, and
``h_2r = ELU(ConvT([h_r, z_r]))``; a final conv gives the mean ``mu`` of the Gaussian decoder.

Inference (Eq. 6-8, top-down sampling as in Kingma et al. 2016): a bottom-up :class:`Encoder`
gives ``q(z0 | x)`` and deterministic features ``h_r``; the posterior at layer r is
``N(qm_r + rm, e^{2 (qls_r + rls)})`` where (qm, qls) come from the encoder features and
(rm, rls) from the decoder state, so the posterior is conditioned on x and on z_>r (openai's
"merged" posterior).  With ``iaf=True`` one IAF step (Eq. 9-10) follows each layer's sample:
``z <- (z - m_ar(z)) e^{-ls_ar(z)}`` with autoregressive (masked) convs fed a context from both
passes; its KL is then the one-sample estimate ``log q(z) - log p(z)``.

Class conditioning (Appendix E.1): with ``n_classes > 0`` every decoder layer uses conditional
weight normalisation (class gains and biases, Eq. 16); the encoder and the z0 prior are
unconditional (a decision, spec section 7).

Per-sample outputs of a posterior pass: ``kl`` (analytic where possible: the ELBO's KL term) and
``log_ratio`` (the Monte-Carlo ``log q(z|x) - log p(z)`` of the drawn z: what an
importance-weighted bound needs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from .layers import ARConv2d, WNConv2d, WNConvTranspose2d, WNLinear, elu, randn_like
from .nets import (OUTPUT_ACTIVATIONS, Encoder, channels_at, gaussian_log_density, kl_normal,
                   resolutions)


class IAFStep(nn.Module):
    """One IAF step on a (N, C, H, W) latent: two hidden AR convs (+context), zero-diag mean/log-scale."""

    def __init__(self, latent_ch: int, hidden: int):
        super().__init__()
        if hidden % latent_ch:
            raise ValueError(f"IAF hidden width {hidden} must be a multiple of the latent channels {latent_ch}")
        self.inp = ARConv2d(latent_ch, hidden, 3, zerodiag=False)
        self.hid = ARConv2d(hidden, hidden, 3, zerodiag=False)
        self.mean = ARConv2d(hidden, latent_ch, 3, zerodiag=True)
        self.log_scale = ARConv2d(hidden, latent_ch, 3, zerodiag=True)

    def forward(self, z: torch.Tensor, ctx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns (z', log|det dz'/dz|) with log-det = -sum ls_ar per sample."""
        h = elu(self.inp(z) + ctx)
        h = elu(self.hid(h))
        m, ls = 0.1 * self.mean(h), 0.1 * self.log_scale(h)
        return (z - m) * torch.exp(-ls), -ls.flatten(1).sum(dim=1)


@dataclass
class PosteriorPass:
    """What a posterior (encode then decode) pass returns, all per sample except ``mean``."""

    mean: torch.Tensor        # decoder mean mu(z), N x C x H x W
    kl: torch.Tensor          # KL(q || p) summed over all latents (analytic without IAF)
    log_ratio: torch.Tensor   # log q(z | x) - log p(z) at the drawn z


class TopDownVAE(nn.Module):
    """Encoder + top-down decoder; ``posterior(x)`` for the ELBO, ``prior_mean(n)`` for sampling."""

    def __init__(self, channels: int, resolution: int, width: int = 64, z_dim: int = 128,
                 latent_ch: int = 32, enc_width: int = 64, iaf: bool = False, iaf_hidden: int = 64,
                 n_classes: int = 0, out_act: str = "identity"):
        super().__init__()
        if out_act not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"out_act must be one of {OUTPUT_ACTIVATIONS}, got {out_act!r}")
        rs = resolutions(resolution)
        chans = [channels_at(r, resolution, width) for r in rs]
        self.z_dim, self.latent_ch, self.c0, self.out_act = z_dim, latent_ch, chans[0], out_act
        self.iaf, self.ctx = iaf, (iaf_hidden if iaf else 0)
        self.encoder = Encoder(channels, resolution, enc_width, z_dim)
        self.lat_rs = rs[:-1]
        nc, L = n_classes, latent_ch
        self.fc = WNLinear(z_dim, chans[0] * rs[0] ** 2, n_classes=nc)
        self.base = rs[0]
        self.enc_heads = nn.ModuleList(
            WNConv2d(self.encoder.feature_channels[r], 2 * L + self.ctx, 3, 1, 1, init_scale=0.1)
            for r in self.lat_rs)
        self.dec_heads = nn.ModuleList(
            WNConv2d(c, 4 * L + self.ctx, 3, 1, 1, n_classes=nc, init_scale=0.1) for c in chans[:-1])
        self.ups = nn.ModuleList(WNConvTranspose2d(a + L, b, 4, 2, 1, n_classes=nc)
                                 for a, b in zip(chans[:-1], chans[1:]))
        self.out = WNConv2d(chans[-1], channels, 3, 1, 1, n_classes=nc)
        self.iafs = nn.ModuleList(IAFStep(L, iaf_hidden) for _ in self.lat_rs) if iaf else None

    @property
    def latent_dims(self) -> int:
        return self.z_dim + sum(self.latent_ch * r * r for r in self.lat_rs)

    # ---- passes ---------------------------------------------------------------------------
    def _top(self, z0: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        return elu(self.fc(z0, labels)).view(z0.shape[0], self.c0, self.base, self.base)

    def _up(self, i: int, h: torch.Tensor, z: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        return elu(self.ups[i](torch.cat([h, z], dim=1), labels))

    def _mean(self, h: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        mu = self.out(h, labels)
        return torch.tanh(mu) if self.out_act == "tanh" else mu

    def posterior(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> PosteriorPass:
        """Encode x, draw z ~ q(z | x) top-down (reparameterised), decode the mean mu(z)."""
        m0, ls0, feats = self.encoder(x)
        z0 = m0 + torch.exp(ls0) * randn_like(m0)
        kl = kl_normal(m0, ls0)
        log_ratio = gaussian_log_density(z0, m0, ls0) - gaussian_log_density(z0, torch.zeros_like(z0),
                                                                             torch.zeros_like(z0))
        h = self._top(z0, labels)
        L = self.latent_ch
        for i, r in enumerate(self.lat_rs):
            pm, pls, rm, rls, ctx_d = self.dec_heads[i](h, labels).split([L, L, L, L, self.ctx], dim=1)
            qm, qls, ctx_u = self.enc_heads[i](feats[r]).split([L, L, self.ctx], dim=1)
            m, ls = qm + rm, qls + rls
            z = m + torch.exp(ls) * randn_like(m)
            log_q = gaussian_log_density(z, m, ls)
            if self.iafs is not None:
                z, logdet = self.iafs[i](z, ctx_u + ctx_d)
                log_q = log_q - logdet
            lr = log_q - gaussian_log_density(z, pm, pls)
            kl = kl + (lr if self.iafs is not None else kl_normal(m, ls, pm, pls))
            log_ratio = log_ratio + lr
            h = self._up(i, h, z, labels)
        return PosteriorPass(self._mean(h, labels), kl, log_ratio)

    def prior_mean(self, n: int, labels: Optional[torch.Tensor] = None,
                   device: Optional[torch.device] = None) -> torch.Tensor:
        """Draw z ~ p(z) top-down and return the decoder mean mu(z) (N x C x H x W)."""
        device = device or self.fc.v.device
        h = self._top(torch.randn(n, self.z_dim, device=device), labels)
        L = self.latent_ch
        for i in range(len(self.lat_rs)):
            # only the prior's (pm, pls): the first 2L output channels of the head (half its FLOPs)
            pm, pls = self.dec_heads[i](h, labels, n_out=2 * L).split([L, L], dim=1)
            h = self._up(i, h, pm + torch.exp(pls) * randn_like(pm), labels)
        return self._mean(h, labels)
