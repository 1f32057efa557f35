r"""SidAE: Siamese denoising autoencoder losses.

"Self-Supervised Siamese Autoencoders" (Baier, Mair, Fadel, arXiv:2304.02549; no code
released). Two augmented ("noisy") views :math:`x_1, x_2` of a clean image :math:`x`
go through the SimSiam encoder :math:`f` (backbone + 3-layer projector) to
:math:`z_t = f(x_t)`, the 2-layer predictor :math:`h` gives :math:`p_t = h(z_t)`, and a
decoder :math:`d` reconstructs the clean image from each :math:`z_t`:

.. math::

    \mathcal{L}_{si} = \tfrac12 D\bigl(p_1, \mathrm{sg}(z_2)\bigr)
                     + \tfrac12 D\bigl(p_2, \mathrm{sg}(z_1)\bigr), \qquad
    D(p, z) = -\frac{p}{\|p\|_2} \cdot \frac{z}{\|z\|_2}

(SimSiam, with the stop-gradient :math:`\mathrm{sg}`),

.. math::

    \mathcal{L}_{dae} = \tfrac12 \mathrm{MSE}\bigl(x, d(z_1)\bigr)
                      + \tfrac12 \mathrm{MSE}\bigl(x, d(z_2)\bigr),

and the SidAE loss

.. math::

    \mathcal{L} = w\, \mathcal{L}_{dae} + (1 - w)\, \mathcal{L}_{si},

so :math:`w = 0` is SimSiam and :math:`w = 1` the denoising autoencoder fed the same
two views (paper's default :math:`w = 0.5`). :math:`D` and MSE are averaged over the
batch (MSE also over pixels and channels).
"""
from typing import Dict

import torch
import torch.nn.functional as F

__all__ = ['negative_cosine', 'simsiam_loss', 'dae_loss', 'sidae_terms']


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r""":math:`D(p, \mathrm{sg}(z))`, averaged over the batch."""
    return -(F.normalize(p, dim=-1) * F.normalize(z.detach(), dim=-1)).sum(dim=-1).mean()


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor,
                 z2: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathcal{L}_{si}`."""
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


def dae_loss(x: torch.Tensor, x1_hat: torch.Tensor, x2_hat: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathcal{L}_{dae}`: reconstructions of the clean ``x`` from both views."""
    if x1_hat.shape != x.shape or x2_hat.shape != x.shape:
        raise ValueError(f'reconstructions {tuple(x1_hat.shape)}, {tuple(x2_hat.shape)} do '
                         f'not match the clean image {tuple(x.shape)}')
    return 0.5 * F.mse_loss(x1_hat, x) + 0.5 * F.mse_loss(x2_hat, x)


def sidae_terms(l_dae, l_si, w: float) -> Dict[str, torch.Tensor]:
    r"""The weighted terms of :math:`w \mathcal{L}_{dae} + (1-w) \mathcal{L}_{si}` as
    ``loss_dae`` / ``loss_si`` (MMEngine sums every ``loss*`` key). A term whose weight
    is 0 is left out (its input may then be None), and a weight of 1 is not applied,
    so ``w = 0`` returns SimSiam's loss and ``w = 1`` the autoencoder's, bit for bit."""
    if not 0 <= w <= 1:
        raise ValueError(f'w must be in [0, 1], got {w}')
    terms = {}
    if w < 1:
        terms['loss_si'] = l_si if w == 0 else (1 - w) * l_si
    if w > 0:
        terms['loss_dae'] = l_dae if w == 1 else w * l_dae
    return terms
