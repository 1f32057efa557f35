r"""MEC / MCR: maximum-entropy-coding losses of Meta Comprehensive Regularization.

"Self-Supervised Representation Learning with Meta Comprehensive Regularization"
(MCR, CompMod; no code released) builds on the maximum entropy coding of
Liu et al., "Self-Supervised Learning via Maximum Entropy Coding" (MEC, NeurIPS 2022,
github.com/xinliu20/MEC). For ``m`` samples of ``d``-dimensional embeddings with
rows scaled to unit length, MEC's coding length of a batch ``Z`` is

.. math::

    \mathcal{L}_{MEC}(Z) = \mu \log\det\bigl(I_m + \lambda Z Z^\top\bigr),
    \qquad \mu = \frac{m + d}{2}, \quad \lambda = \frac{d}{m \epsilon^2},

and the MEC authors' code evaluates it as a truncated Taylor series of the matrix
logarithm, :math:`\log\det(I + X) = \mathrm{Tr}\log(I + X)`. :func:`mec_trace` is that
series, negated so that minimizing it maximizes the coding length:

.. math::

    \mathrm{mec}(A, B) = -\mathrm{Tr}\Bigl(\mu \sum_{k=1}^{K}
        \frac{(-1)^{k+1}}{k} \bigl(\lambda A B^\top\bigr)^k\Bigr)

with ``A``, ``B`` row-normalized. With :math:`\mu = (m+d)/2` it is (minus) the coding
length; the MEC authors *train* on the series divided by :math:`m\lambda`, i.e.
:math:`\mu = 1/(m\lambda)` (their code: ``loss = -trace / m * lamda_inv``, the coding
length ``mu * loss`` only logged), whose first-order term is minus the mean cosine
similarity of the pairs. Callers choose :math:`\mu`. The other defaults are MEC's: order ``K = 4``,
:math:`\epsilon^2 = 64` (their ``--eps``), :math:`\mu = (m+d)/2`,
:math:`\lambda = d/(m\epsilon^2)`; and because the series converges only when the
spectral radius of :math:`\lambda A B^\top` is below 1, MEC warms :math:`1/\lambda`
up linearly from :math:`8/\lambda` to :math:`1/\lambda` over the first epochs
(:func:`mec_lambda_warmup`).

MCR (Eq. 6 for L_comp, Eq. 7 for L_mcr) applies it to the fused embedding :math:`\hat Z` of CompMod and to the
embeddings :math:`Z_t` of the views ``t``:

.. math::

    \mathcal{L}_{comp}(\hat Z) = \mathrm{mec}(\hat Z, \hat Z), \qquad
    \mathcal{L}_{mcr}(\hat Z, \{Z_t\}) = \sum_t \mathrm{mec}(\hat Z, Z_t).

**The cross term is an approximation.** For :math:`A = B` the series is the Taylor
expansion of :math:`-\mu\log\det(I + \lambda ZZ^\top)`, a coding length (exact as
``K`` grows, when :math:`\lambda\|Z\|_2^2 < 1`). For :math:`Z_t \ne \hat Z`,
:math:`A B^\top` is neither symmetric nor positive semi-definite: its eigenvalues can
be complex or below :math:`-1/\lambda`, :math:`\log\det(I + \lambda AB^\top)` is then
no coding length of anything (and may be undefined), and the truncated polynomial is
a surrogate that agrees with it only where the series converges. This follows the
MEC authors, who use the same polynomial for their cross-view pairs
:math:`(p_1, z_2)`.

Computation. :math:`\mathrm{Tr}((AB^\top)^k) = \mathrm{Tr}((B^\top A)^k)` (cyclic
trace), so the series is evaluated on the smaller of the ``m x m`` and ``d x d``
matrices ``C``; and :math:`\mathrm{Tr}(C^{i+j}) = \langle C^i, (C^j)^\top\rangle`, so
order 4 needs a single ``n x n`` matrix product besides forming ``C``.

Example::

    >>> z_hat, z1, z2 = (torch.randn(256, 128) for _ in range(3))
    >>> lam, mu = mec_hparams(m=256, d=128)
    >>> l_comp = comp_loss(z_hat, lam, mu)
    >>> l_mcr = mcr_loss(z_hat, [z1, z2], lam, mu)
"""
import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = ['mec_trace', 'mec_hparams', 'mec_lambda_warmup', 'comp_loss', 'mcr_loss']

Number = Union[float, torch.Tensor]

#: MEC's ``--eps``: the square of the bound on the expected decoding error.
EPS_SQ = 64.0
#: MEC warms 1/lambda up from this multiple of its final value.
WARMUP_FACTOR = 8.0


def mec_hparams(m: int, d: int, eps_sq: float = EPS_SQ) -> Tuple[float, float]:
    r"""MEC's :math:`(\lambda, \mu) = (d / (m \epsilon^2), (m + d) / 2)` for ``m``
    samples of dimension ``d``."""
    if m < 1 or d < 1 or not eps_sq > 0:
        raise ValueError(f'mec_hparams needs m >= 1, d >= 1 and eps_sq > 0, got m={m}, '
                         f'd={d}, eps_sq={eps_sq}')
    return d / (m * eps_sq), (m + d) / 2


def mec_lambda_warmup(lam: float, progress: float, start_factor: float = WARMUP_FACTOR) -> float:
    r""":math:`\lambda` during MEC's warm-up: :math:`1/\lambda` goes linearly from
    ``start_factor / lam`` (``progress = 0``) to ``1 / lam`` (``progress >= 1``), as
    MEC's ``lamda_scheduler`` (a ``linspace`` of ``lamda_inv``) does."""
    progress = min(max(float(progress), 0.0), 1.0)
    return lam / (start_factor + (1.0 - start_factor) * progress)


def _trace_of_product(P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Tr(P Q) without forming P Q."""
    return (P * Q.transpose(0, 1)).sum()


def mec_trace(A: torch.Tensor, B: torch.Tensor, lam: Number, mu: Number, order: int = 4,
              normalize: bool = True) -> torch.Tensor:
    r""":math:`-\mathrm{Tr}(\mu \sum_{k=1}^{K} (-1)^{k+1}/k\, (\lambda A B^\top)^k)`.

    Args:
        A, B: ``(m, d)`` embeddings (samples in rows).
        lam: :math:`\lambda` (:func:`mec_hparams`, :func:`mec_lambda_warmup`).
        mu: :math:`\mu`.
        order: ``K``, the number of terms (MEC: 4).
        normalize: scale the rows of ``A`` and ``B`` to unit length first (MEC does).

    Returns:
        0-dim tensor, differentiable in ``A`` and ``B``.
    """
    if A.dim() != 2 or A.shape != B.shape:
        raise ValueError(f'mec_trace needs two (m, d) matrices of the same shape, got '
                         f'{tuple(A.shape)} and {tuple(B.shape)}')
    if order < 1:
        raise ValueError(f'order must be >= 1, got {order}')
    if normalize:
        A, B = F.normalize(A, dim=1), F.normalize(B, dim=1)
    m, d = A.shape
    # Same traces of powers either way; take the smaller matrix.
    C = lam * (A @ B.T if m <= d else B.T @ A)
    powers = [C]  # powers[i - 1] = C^i, up to C^ceil(order / 2)
    for _ in range(1, math.ceil(order / 2)):
        powers.append(powers[-1] @ C)
    series = C.new_zeros(())
    for k in range(1, order + 1):
        i = math.ceil(k / 2)
        trace = torch.trace(powers[0]) if k == 1 else _trace_of_product(
            powers[i - 1], powers[k - i - 1])
        series = series + ((-1) ** (k + 1) / k) * trace
    return -mu * series


def comp_loss(z_hat: torch.Tensor, lam: Number, mu: Number, order: int = 4) -> torch.Tensor:
    r""":math:`\mathcal{L}_{comp}(\hat Z) = \mathrm{mec}(\hat Z, \hat Z)` (MCR Eq. 6)."""
    return mec_trace(z_hat, z_hat, lam, mu, order)


def mcr_loss(z_hat: torch.Tensor, z_views: Sequence[torch.Tensor], lam: Number, mu: Number,
             order: int = 4) -> torch.Tensor:
    r""":math:`\mathcal{L}_{mcr} = \sum_t \mathrm{mec}(\hat Z, Z_t)` (MCR Eq. 7)."""
    if len(z_views) == 0:
        raise ValueError('mcr_loss needs the embeddings of at least one view')
    return sum(mec_trace(z_hat, z, lam, mu, order) for z in z_views)
