r"""VICReg: Variance-Invariance-Covariance Regularization (the SSL method VCReg comes from).

Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022 (arXiv:2105.04906), Sec. 3; reference code
facebookresearch/vicreg ``main_vicreg.py``; lightly's ``loss/vicreg_loss.py`` computes the
same as that code. Two batches of embeddings :math:`Z, Z' \in \mathbb{R}^{n \times d}`
(the expander's outputs for two views of the same images):

.. math::

    s(Z, Z') = \frac{1}{n} \sum_i \|z_i - z'_i\|_2^2, \qquad
    v(Z) = \frac{1}{d} \sum_{j=1}^{d}
           \max\bigl(0,\ \gamma - \sqrt{\mathrm{Var}(z^j) + \epsilon}\bigr),

.. math::

    c(Z) = \frac{1}{d} \sum_{i \neq j} [C(Z)]_{ij}^2, \qquad
    C(Z) = \frac{1}{n-1} \sum_i (z_i - \bar z)(z_i - \bar z)^\top,

.. math::

    \ell(Z, Z') = \lambda\, s(Z, Z') + \mu\, [v(Z) + v(Z')] + \nu\, [c(Z) + c(Z')]

with :math:`\lambda = \mu = 25`, :math:`\nu = 1`, :math:`\gamma = 1`,
:math:`\epsilon = 10^{-4}` (Var unbiased). The variance and covariance terms are VCReg's
(:func:`sslreg.losses.vcreg.vcreg_terms`, whose two terms are :math:`v` and
:math:`c_{vc} = \frac{1}{d(d-1)} \sum_{i\neq j} C_{ij}^2`): :math:`v` is the same and
:math:`c(Z) = (d - 1)\, c_{vc}(Z)`. Nothing of that math is repeated here.

``scaling`` -- the paper's formula and its code differ by constant factors, and the
published weights were used with the code:

* ``'code'`` (default; facebookresearch/vicreg and lightly): the invariance term is
  ``F.mse_loss(Z, Z')``, the mean over all :math:`n d` entries, i.e. :math:`s / d`; the
  variance term is :math:`\frac{1}{2}[v(Z) + v(Z')]`; the covariance term is
  :math:`c(Z) + c(Z')`.
* ``'paper'``: :math:`s`, :math:`v(Z) + v(Z')`, :math:`c(Z) + c(Z')` as printed above.

``gather`` (the reference code's ``FullGatherLayer``): under ``torch.distributed`` the
variance and covariance are taken over the embeddings of all ranks, gathered with a
gradient (:func:`sslreg.losses.distributed.all_gather_with_grad`: its backward sums the
gradient over ranks and keeps this rank's rows, as ``FullGatherLayer``); the invariance
term stays per rank, as in the reference code. Without a process group it does nothing.

Usage::

    from sslreg.losses import vicreg_loss
    z_a, z_b = expander(backbone(x_a)), expander(backbone(x_b))
    loss = vicreg_loss(z_a, z_b)              # 25 s + 25 v + 1 c, the code's scaling
"""
from typing import Tuple

import torch
import torch.nn.functional as F

from .distributed import all_gather_with_grad
from .vcreg import vcreg_terms

__all__ = ['vicreg_loss', 'vicreg_terms', 'SCALINGS']

#: ``scaling`` values: the reference code's (and lightly's) or the paper's formula.
SCALINGS = ('code', 'paper')


def vicreg_terms(z_a: torch.Tensor, z_b: torch.Tensor, eps: float = 1e-4,
                 scaling: str = 'code', gather: bool = True
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(invariance, variance, covariance)`` of two ``(n, d)`` embedding batches, before
    the weights :math:`\\lambda, \\mu, \\nu` (module docstring: ``scaling``, ``gather``).
    Float32 (float64 for float64 input), differentiable."""
    if scaling not in SCALINGS:
        raise ValueError(f"VICReg scaling must be one of {SCALINGS} ('code': the reference "
                         f"code's and lightly's; 'paper': the formula as printed), got "
                         f'{scaling!r}')
    if z_a.dim() != 2 or z_a.shape != z_b.shape:
        raise ValueError(f'VICReg takes two (n, d) embedding batches of the same shape, got '
                         f'{tuple(z_a.shape)} and {tuple(z_b.shape)}')
    d = z_a.shape[1]
    dtype = torch.float64 if z_a.dtype == torch.float64 else torch.float32
    with torch.autocast(z_a.device.type, enabled=False):
        a, b = z_a.to(dtype), z_b.to(dtype)
        invariance = (F.mse_loss(a, b) if scaling == 'code'
                      else (a - b).square().sum(dim=1).mean())
    v_a, c_a = vcreg_terms(all_gather_with_grad(z_a, gather)[0], eps, None, channel_dim=1)
    v_b, c_b = vcreg_terms(all_gather_with_grad(z_b, gather)[0], eps, None, channel_dim=1)
    variance = (v_a + v_b) * (0.5 if scaling == 'code' else 1.0)
    covariance = (c_a + c_b) * (d - 1)
    return invariance, variance, covariance


def vicreg_loss(z_a: torch.Tensor, z_b: torch.Tensor, sim_coeff: float = 25.0,
                std_coeff: float = 25.0, cov_coeff: float = 1.0, eps: float = 1e-4,
                scaling: str = 'code', gather: bool = True) -> torch.Tensor:
    r""":math:`\ell = \lambda s + \mu v + \nu c` (``sim_coeff``, ``std_coeff``,
    ``cov_coeff``: the reference code's names) of :func:`vicreg_terms`."""
    invariance, variance, covariance = vicreg_terms(z_a, z_b, eps, scaling, gather)
    return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
