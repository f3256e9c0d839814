"""Adversarial losses: the discriminator loss with gradient penalty, and the generator's L_Q.

* Discriminator (the standard GAN cross-entropy on logits ``a``; paper Section 3):
  ``L_D = mean softplus(-a(x_real)) + mean softplus(a(x_fake)) + gp_weight * GP``.
* Gradient penalty (paper Appendix B.3, Eq. 11-13; Gulrajani et al. 2017, igul222
  ``gan_cifar.py``): ``GP = mean_i (||grad_x a(x_hat_i)||_2 - 1)^2`` with
  ``x_hat = eps * x_real + (1 - eps) * x_fake``, ``eps ~ U[0, 1]`` per sample; the paper's
  coefficient is 100 (Appendix C).  (Eq. 11 prints "lambda +"; the intended product is used.)
* Generator (paper Eq. 5, after Sonderby et al.): ``L_Q = -E[ln D - ln(1 - D)] = -mean a(x_fake)``,
  an exact identity on logits.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

#: gradient-penalty coefficient of the paper (Appendix C)
GP_WEIGHT = 100.0


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy discriminator loss on logits: -ln D(real) - ln(1 - D(fake)), batch means."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_Q of Eq. 5: -mean[ln D - ln(1 - D)] = -mean logit."""
    return -fake_logits.mean()


def gradient_penalty(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Two-sided penalty mean (||grad a(x_hat)|| - 1)^2 on per-sample interpolates (Eq. 11-13)."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake batches must have the same shape, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    logits = disc(x_hat, labels)
    (grad,) = torch.autograd.grad(logits.sum(), x_hat, create_graph=True)
    norm = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + 1e-12)
    return (norm - 1).pow(2).mean()


def _logits_of_both(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor, real_labels: Optional[torch.Tensor],
                    fake_labels: Optional[torch.Tensor]):
    """D's logits on reals and fakes from one forward over both batches (the discriminators have no batch
    statistics, so each logit is the same function of its own image; one call of twice the batch uses
    the convolutions better than two)."""
    if real.shape[1:] != fake.shape[1:] or (real_labels is None) != (fake_labels is None):
        return disc(real, real_labels), disc(fake, fake_labels)
    labels = None if real_labels is None else torch.cat([real_labels, fake_labels])
    logits = disc(torch.cat([real, fake]), labels)
    return logits[:real.shape[0]], logits[real.shape[0]:]


def discriminator_losses(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                         gp_weight: float = GP_WEIGHT, real_labels: Optional[torch.Tensor] = None,
                         fake_labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """The disc phase's named losses: ``loss`` (to back-propagate), ``d_loss``, ``gp`` and mean logits.

    ``fake`` is detached here, so the generator gets no gradient from the D step.  For a
    conditional D the interpolates carry the real labels (the pairs are aligned by index).
    """
    fake = fake.detach()
    a_real, a_fake = _logits_of_both(disc, real, fake, real_labels, fake_labels)
    ce = d_loss(a_real, a_fake)
    gp = gradient_penalty(disc, real, fake, real_labels) if gp_weight else torch.zeros((), device=real.device)
    return {"loss": ce + gp_weight * gp, "d_loss": ce, "gp": gp,
            "d_real": a_real.mean().detach(), "d_fake": a_fake.mean().detach()}
