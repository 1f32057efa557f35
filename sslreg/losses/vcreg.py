r"""VCReg: Variance-Covariance Regularization.

Zhu, Evtimova, Chen, Shwartz-Ziv, LeCun, "Variance-Covariance Regularization
Improves Representation Learning" (arXiv:2306.13292).

A feature map is read as ``n`` samples of ``d`` channels: the channel axis is
moved last and every other axis (batch, spatial positions, tokens) is flattened
into samples, so ``z`` has shape ``(n, d)``. With the sample covariance

.. math::

    C = \frac{1}{n-1} \sum_{k=1}^{n} (z_k - \bar z)(z_k - \bar z)^\top

the regularizer is

.. math::

    \ell_{vcreg}(z) = \frac{\alpha}{d} \sum_{i=1}^{d}
        \max\bigl(0,\ 1 - \sqrt{C_{ii} + \epsilon}\bigr)
      + \frac{\beta}{d(d-1)} \sum_{i \neq j} \phi(C_{ij})

with :math:`\phi(c) = c^2`, or the smooth-L1 variant
:math:`\phi_\delta(c) = c^2` for :math:`|c| \le \delta` and
:math:`2\delta|c| - \delta^2` otherwise.

Two entry points:

* :func:`vcreg_loss` returns :math:`\ell_{vcreg}` as a differentiable scalar.
* :func:`vcreg_fast` is the identity in the forward pass and adds
  :math:`\partial \ell_{vcreg} / \partial x` to the incoming gradient in the
  backward pass (the paper's "fast implementation"): no autograd graph through
  the statistics, two matrix products in all.

Covariance scale: Eq. 2 or Algorithm 1 (``cov_scale``)
-------------------------------------------------------
The paper states the loss as Eq. 2 (above), but its Algorithm 1 (App. B, the
fast implementation the paper says its experiments use) back-propagates a
different gradient. Gradient of Eq. 2, for centred samples :math:`z_c` and
:math:`s_i = \sqrt{C_{ii} + \epsilon}`, with
:math:`\partial C_{ij} / \partial z_{ki} = z_{c,kj} / (n-1)` (and twice that on the
diagonal):

.. math::

    \frac{\partial \ell}{\partial z_{ki}} =
      \underbrace{-\frac{\alpha}{d\,(n-1)} \frac{z_{c,ki}}{s_i}\,[s_i < 1]}_{\text{variance}}
      \; + \; \underbrace{\frac{2\beta}{d(d-1)\,(n-1)}
        \sum_{j \neq i} \phi'(C_{ij})\, z_{c,kj}}_{\text{covariance}}

(:math:`\phi'(c) = 2c` for squares, so the covariance part is
:math:`\frac{4\beta}{d(d-1)(n-1)} (z_c C_{\text{off}})_{ki}`). Algorithm 1's
backward (on an input already demeaned, see below) adds
:math:`-\frac{\alpha}{d(n-1)} z\,\mathrm{diag}(1/s)[s<1]` for the variance, the
same as above, and :math:`\frac{4\beta}{d(d-1)} z\,C_{\text{off}}` for the
covariance: the :math:`1/(n-1)` of :math:`\partial C / \partial z` is missing from
the covariance part only. Its covariance gradient is therefore exactly
:math:`(n-1)\times` Eq. 2's, its variance gradient equal to Eq. 2's, and it is the
exact gradient of

.. math::

    \ell_{alg1}(z) = \frac{\alpha}{d} \sum_i \max(0, 1 - s_i)
      + (n-1)\,\frac{\beta}{d(d-1)} \sum_{i \neq j} \phi(C_{ij})

i.e. Eq. 2 with :math:`\beta` replaced by :math:`(n-1)\beta`, where :math:`n` is
the number of samples the covariance is taken over (batch x spatial positions;
the global count under ``sync``; the sampled count with ``sample_ratio < 1``).
(:math:`n` is a constant of the batch, not a function of :math:`z`, so scaling
by it changes no derivation.) ``cov_scale='eq2'`` (default) is Eq. 2;
``cov_scale='algorithm1'`` makes :func:`vcreg_loss`, :func:`vcreg_terms` and the
value recorded by :func:`vcreg_fast` return :math:`\ell_{alg1}` and
:func:`vcreg_fast` back-propagate its gradient, so explicit and fast forms agree
for either choice. With ``delta`` (smooth-L1), ``'algorithm1'`` scales the
smooth-L1 covariance term by the same :math:`n-1`. Per sample, Eq. 2's
covariance gradient shrinks like :math:`1/n` while Algorithm 1's does not: the
paper's :math:`\beta` values (tuned with Algorithm 1) mean a far stronger
covariance penalty than the same :math:`\beta` under Eq. 2.

Under ``sync`` the factor is the global :math:`N - 1`. Algorithm 1 itself holds
no cross-device reduction (as we read it), so on :math:`W` devices it computes
per-device statistics and DDP averages the :math:`W` per-device gradients; with
``sync=True`` and ``'algorithm1'`` the covariance gradient after that averaging
is :math:`\approx W\times` the per-device Algorithm 1's (under Eq. 2 the
:math:`1/(n-1)` makes both the same scale). ``sync=False`` reproduces
per-device Algorithm 1.

Batch demean (:func:`batch_demean`)
-----------------------------------
App. A uses "a mean removal layer along the batch preceding the VCReg layer" and
Algorithm 1 says a batch demean operation is applied before calling it:
:math:`y = x - \bar x` over the sample axes, per channel. That layer changes the
forward pass (the network downstream sees :math:`y`); its state (a running mean
for evaluation) belongs to :class:`sslreg.regularizers.VCReg`, the pure function
is :func:`batch_demean`. The VCReg statistics here centre their input anyway, so
on a demeaned input both forms compute the same :math:`C`.

Gradient share (``grad_norms``)
-------------------------------
:func:`vcreg_fast` can report, per call, :math:`\|g_v\|_F^2` (the gradient it
adds) and :math:`\|g_y\|_F^2` (the gradient arriving from downstream), so a
caller can form :math:`\sqrt{\sum \|g_v\|^2} / \sqrt{\sum \|g_y\|^2}` over the
regularized tensors of a step. :math:`\|g_v\|^2 = \|z_c M\|^2`, taken as
:math:`\langle S M, M\rangle` (:math:`S = z_c^\top z_c` this process's scatter,
a :math:`d \times d` product) when there are many more rows than channels, else
from :math:`z_c M` itself; plus one pass over :math:`g_y` for its norm. Note
that :math:`g_y` at a layer contains whatever reaches it from downstream,
VCReg gradients of later regularized layers included.
:func:`vcreg_grad_share` computes the ratio for the explicit loss with
``torch.autograd.grad`` (a diagnostic).

Distributed (``sync=True``)
---------------------------
Sums (:math:`\sum z`, :math:`\sum (z-\bar z)^\top (z-\bar z)`, ``n``) are
all-reduced, so every rank sees the mean, ``C`` and the loss value of the
joined batch. The gradient each rank produces for its own rows is
``world_size`` times the single-process gradient of those rows. That is what
makes it right under DistributedDataParallel: DDP averages parameter gradients
over ranks, so the averaged gradient equals the single-process gradient of the
joined batch, exactly as for a task loss that is a mean over the local batch.
Equivalently, each rank back-propagates the gradient of the sum of all ranks'
(identical) losses: :func:`vcreg_loss` gets this from an all-reduce whose
backward sums gradients over ranks, :func:`vcreg_fast` by scaling its analytic
gradient by ``world_size``. Without an initialized process group, or with
world size 1, ``sync`` does nothing. The all-reduces are collective: all
ranks must call with the same ``sync``, ``channel_dim`` and ``d`` (and, for
:func:`vcreg_loss`, back-propagate through it, since its backward all-reduces
too); ranks may hold different numbers of samples.
"""
import math
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .distributed import sum_over_ranks, world_info

__all__ = ['vcreg_loss', 'vcreg_fast', 'vcreg_terms', 'batch_demean', 'vcreg_grad_share',
           'COV_SCALES']

#: ``cov_scale`` values: Eq. 2 as printed, or the loss whose gradient Algorithm 1 computes.
COV_SCALES = ('eq2', 'algorithm1')


# --------------------------------------------------------------------------- checks


def _check_hparams(eps: float, delta: Optional[float]) -> None:
    if not eps > 0:
        raise ValueError(
            f'eps must be > 0 (it keeps sqrt(C_ii + eps) and its gradient finite for '
            f'dead channels), got eps={eps}')
    if delta is not None and not delta > 0:
        raise ValueError(
            f'delta must be None (squared covariance penalty) or > 0 (smooth-L1 '
            f'threshold), got delta={delta}')


def _check_cov_scale(cov_scale: str) -> None:
    if cov_scale not in COV_SCALES:
        raise ValueError(
            f"cov_scale must be one of {', '.join(repr(c) for c in COV_SCALES)} ('eq2': the "
            f"paper's Eq. 2 with the 1/(n-1) covariance; 'algorithm1': the loss whose "
            f"gradient the paper's Algorithm 1 computes, beta scaled by n-1), got "
            f"{cov_scale!r}")


def _cov_factor(cov_scale: str, n: int) -> int:
    """Multiplier of beta: 1 for Eq. 2, n - 1 for Algorithm 1 (module docstring)."""
    return n - 1 if cov_scale == 'algorithm1' else 1


def _size_error(shape, channel_dim, n: int, d: int) -> ValueError:
    return ValueError(
        f'VCReg needs at least 2 samples and 2 channels to form a covariance '
        f'matrix, but x of shape {tuple(shape)} with channel_dim={channel_dim} gives '
        f'n={n} samples of d={d} channels (every axis other than channel_dim counts '
        f'as samples). Point channel_dim at the feature axis, and pass more than one '
        f'sample or spatial position (or, with sync=True, ranks that hold two or more '
        f'samples between them).')


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    # Covariances of fp16/bf16 features lose too many bits (and sums overflow in
    # fp16), so statistics are never computed below float32.
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------- layout


class _Layout(NamedTuple):
    """How ``x`` is read as samples of channels without copying when possible.

    ``batched=True``: ``x`` is viewed as ``(B, d, S)`` (channels in the middle,
    e.g. contiguous NCHW), samples are the ``B * S`` columns; ``C`` is then a sum
    of ``B`` products of ``(d, S)`` blocks, which avoids a transposed ``n x d``
    copy. Used only when ``S >= d``, so the ``(B, d, d)`` partial products are no
    larger than ``x`` itself.

    ``batched=False``: ``x`` is read as an ``(n, d)`` row matrix (a view when the
    channel axis is already the fastest-varying one, a copy otherwise).
    """
    shape: torch.Size
    channel_dim: int  # resolved to 0 <= channel_dim < x.dim()
    batched: bool
    given_channel_dim: int  # as the caller wrote it, for error messages

    @classmethod
    def of(cls, x: torch.Tensor, channel_dim: int) -> '_Layout':
        if x.dim() < 2 or not -x.dim() <= channel_dim < x.dim():
            raise ValueError(
                f'channel_dim={channel_dim} does not fit x of shape {tuple(x.shape)}: VCReg '
                f'needs x with at least 2 axes (samples and channels) and channel_dim in '
                f'[-{x.dim()}, {x.dim() - 1}] naming the feature axis.')
        k = channel_dim % x.dim()
        d = x.shape[k]
        if d < 2:
            raise _size_error(x.shape, channel_dim, x.numel() // max(d, 1), d)
        inner = math.prod(x.shape[k + 1:])
        batched = inner > 1 and inner >= d and x.is_contiguous()
        return cls(x.shape, k, batched, channel_dim)

    @property
    def d(self) -> int:
        return self.shape[self.channel_dim]

    def samples(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``t`` (shaped like ``x``) as ``(B, d, S)`` or ``(n, d)`` in ``dtype``."""
        k, d = self.channel_dim, self.d
        if self.batched:
            t = t.reshape(math.prod(self.shape[:k]), d, -1)
        else:
            t = t.movedim(k, -1).reshape(-1, d)
        return t.to(dtype)

    def restore(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`samples` (up to dtype)."""
        if self.batched:
            return t.reshape(self.shape)
        moved = list(self.shape)
        moved.append(moved.pop(self.channel_dim))
        return t.reshape(moved).movedim(-1, self.channel_dim)


# --------------------------------------------------------------------------- statistics


def _world_size(sync: bool) -> int:
    return world_info(sync)[0]


def _mean_and_covariance(z: torch.Tensor, layout: _Layout, world_size: int):
    """Mean ``(d,)``, covariance ``C`` ``(d, d)``, sample count ``n`` and this
    process's scatter ``S = z_c^T z_c`` (``(n - 1) C`` without ``sync``).

    Two passes (mean first, then the scatter of centred samples) rather than
    ``sum z z^T - n mean mean^T``: the one-pass form cancels catastrophically in
    float32 when the mean is large compared to the spread.
    """
    n = z.numel() // layout.d
    # An error in the mean shifts every centred sample, and the fast backward (no
    # mean-correction term) passes it on: per-row partial sums stay in z's dtype
    # (short, cascade-summed), their total is taken in float64. Asking sum() for
    # float64 directly would first copy all of z to float64.
    partial = z.sum(dim=2) if layout.batched else z
    total = partial.sum(dim=0, dtype=torch.float64)
    if world_size > 1:
        count = torch.tensor([n], dtype=torch.int64, device=z.device)
        dist.all_reduce(count)
        n = int(count.item())
    if n < 2:
        raise _size_error(layout.shape, layout.given_channel_dim, n, layout.d)
    mean = (sum_over_ranks(total, world_size) / n).to(z.dtype)
    if layout.batched:
        zc = z - mean[:, None]
        scatter = torch.bmm(zc, zc.transpose(1, 2)).sum(0)
    else:
        zc = z - mean
        scatter = zc.T @ zc
    del zc  # the n x d temporary (besides an fp16/bf16 upcast); free it early
    return mean, sum_over_ranks(scatter, world_size) / (n - 1), n, scatter


# --------------------------------------------------------------------------- loss of C


def _phi(c: torch.Tensor, delta: Optional[float]) -> torch.Tensor:
    if delta is None:
        return c * c
    return torch.where(c.abs() <= delta, c * c, 2 * delta * c.abs() - delta * delta)


def _phi_prime(c: torch.Tensor, delta: Optional[float]) -> torch.Tensor:
    # d/dc of both branches of phi is 2 * clamp(c, -delta, delta).
    return 2 * (c if delta is None else c.clamp(-delta, delta))


def _off_diagonal(c: torch.Tensor) -> torch.Tensor:
    # Masking instead of "sum(all) - sum(diag)": the diagonal (variances) can be
    # much larger than the covariances and the subtraction would swamp them.
    eye = torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
    return c.masked_fill(eye, 0)


def _terms_of_covariance(C, eps, delta):
    """(variance term, covariance term) of the loss, before alpha and beta."""
    d = C.shape[0]
    std = torch.sqrt(torch.diagonal(C) + eps)
    variance_term = F.relu(1 - std).sum() / d
    covariance_term = _phi(_off_diagonal(C), delta).sum() / (d * (d - 1))
    return variance_term, covariance_term


def _vcreg_of_covariance(C, alpha, beta, eps, delta) -> torch.Tensor:
    variance_term, covariance_term = _terms_of_covariance(C, eps, delta)
    return alpha * variance_term + beta * covariance_term


def _vcreg_grad_of_covariance(C, alpha, beta, eps, delta) -> torch.Tensor:
    """G = d loss / d C, entry by entry (C_ij and C_ji are separate entries)."""
    d = C.shape[0]
    G = _phi_prime(C, delta) * (beta / (d * (d - 1)))
    std = torch.sqrt(torch.diagonal(C) + eps)
    # The hinge is flat once a channel's std reaches 1 (relu'(0) = 0, as autograd).
    G.diagonal().copy_((-alpha / (2 * d)) / std * (std < 1))
    return G


# --------------------------------------------------------------------------- public API


def vcreg_loss(x: torch.Tensor,
               alpha: float = 1.0,
               beta: float = 1.0,
               eps: float = 1e-4,
               delta: Optional[float] = None,
               channel_dim: int = 1,
               sync: bool = False,
               cov_scale: str = 'eq2') -> torch.Tensor:
    r"""VCReg loss :math:`\ell_{vcreg}` of a feature map (module docstring).

    Args:
        x: features; ``channel_dim`` is the feature axis, all other axes are
            samples: ``(N, C, H, W)`` gives ``N*H*W`` samples,
            ``(N, L, C)`` with ``channel_dim=-1`` gives ``N*L``.
        alpha: weight of the variance hinge.
        beta: weight of the covariance penalty.
        eps: added to the variances under the square root (> 0).
        delta: ``None`` for :math:`\phi(c)=c^2`, else the smooth-L1 threshold.
        channel_dim: the feature axis.
        sync: reduce the statistics over all ranks (module docstring).
        cov_scale: ``'eq2'`` (default): Eq. 2 as printed; ``'algorithm1'``: the
            loss whose gradient Algorithm 1 computes, Eq. 2 with ``beta`` times
            ``n - 1`` (``n``: samples, over all ranks with ``sync``), so that
            autograd of it equals ``vcreg_fast(..., cov_scale='algorithm1')``.

    Returns:
        0-dim tensor in float32 (float64 for float64 input), differentiable.

    Raises:
        ValueError: fewer than 2 samples or channels, ``eps <= 0``,
            ``delta <= 0``, ``cov_scale`` not in :data:`COV_SCALES`.
    """
    _check_hparams(eps, delta)
    _check_cov_scale(cov_scale)
    layout = _Layout.of(x, channel_dim)
    # Autocast would run the matmuls in half precision; statistics stay >= fp32.
    with torch.autocast(x.device.type, enabled=False):
        z = layout.samples(x, _stat_dtype(x.dtype))
        _, C, n, _ = _mean_and_covariance(z, layout, _world_size(sync))
        return _vcreg_of_covariance(C, alpha, beta * _cov_factor(cov_scale, n), eps, delta)


def vcreg_terms(x: torch.Tensor,
                eps: float = 1e-4,
                delta: Optional[float] = None,
                channel_dim: int = 1,
                cov_scale: str = 'eq2') -> Tuple[torch.Tensor, torch.Tensor]:
    r"""The two terms of :math:`\ell_{vcreg}` separately, before :math:`\alpha, \beta`:

    .. math::

        v = \frac{1}{d} \sum_i \max\bigl(0, 1 - \sqrt{C_{ii} + \epsilon}\bigr), \qquad
        c = \frac{1}{d(d-1)} \sum_{i \neq j} \phi(C_{ij})

    so ``vcreg_loss(x, alpha, beta, eps, delta, channel_dim) == alpha * v + beta * c``.
    With ``cov_scale='algorithm1'`` the second term is :math:`(n-1)\,c` (module
    docstring), and the identity holds for that ``cov_scale`` too.
    A diagnostic (no ``sync``): statistics of this process's ``x`` only. Arguments
    as in :func:`vcreg_loss`; returns ``(v, c)``, differentiable, float32 (float64
    for float64 input).
    """
    _check_hparams(eps, delta)
    _check_cov_scale(cov_scale)
    layout = _Layout.of(x, channel_dim)
    with torch.autocast(x.device.type, enabled=False):
        z = layout.samples(x, _stat_dtype(x.dtype))
        _, C, n, _ = _mean_and_covariance(z, layout, 1)
        v, c = _terms_of_covariance(C, eps, delta)
        return v, c * _cov_factor(cov_scale, n)


def _sample_positions(z: torch.Tensor, layout: _Layout, ratio: float) -> Optional[torch.Tensor]:
    """Indices of the sampled samples, or None for exact statistics (ratio 1).

    Batched layout ``(B, d, S)``: the same ``ceil(ratio*S)`` positions of every map
    (at least 2); row layout ``(n, d)``: ``ceil(ratio*n)`` rows (at least 2)."""
    if ratio >= 1:
        return None
    total = z.shape[2] if layout.batched else z.shape[0]
    k = min(total, max(2, math.ceil(ratio * total)))
    return torch.randperm(total, device=z.device)[:k].sort().values


def _take(z: torch.Tensor, layout: _Layout, idx: torch.Tensor) -> torch.Tensor:
    return z.index_select(2 if layout.batched else 0, idx)


class _VCRegFast(torch.autograd.Function):
    r"""Identity forward; backward adds :math:`\partial \ell / \partial x`.

    Derivation. With :math:`z_c = z - \mathbf{1}\bar z^\top` and
    :math:`C = z_c^\top z_c / (n-1)`, let :math:`G = \partial\ell/\partial C`.
    :math:`d\ell = \langle G, dC\rangle = \frac{1}{n-1}\langle G,
    dz_c^\top z_c + z_c^\top dz_c\rangle = \frac{1}{n-1}\langle z_c (G + G^\top),
    dz_c\rangle`. Since :math:`dz_c = (I - \mathbf{1}\mathbf{1}^\top/n)\,dz`,
    :math:`\partial\ell/\partial z = (I - \mathbf{1}\mathbf{1}^\top/n)\,z_c M`
    with :math:`M = (G + G^\top)/(n-1)`; the mean correction is
    :math:`\mathbf{1}\,(\mathbf{1}^\top z_c) M / n = 0` because the centred
    samples sum to zero. Hence :math:`\partial\ell/\partial z = z_c M`, i.e.
    :math:`\frac{2}{n-1} z_c G_{sym}`. With ``sync`` the rows are local, while
    ``mean``, ``C`` and ``n`` are global, and ``M`` carries the ``world_size``
    factor explained in the module docstring.

    ``cov_scale='algorithm1'`` enters only through ``G``: its covariance entries
    carry ``beta * (n - 1)``, which cancels the ``1/(n-1)`` of ``M`` on the
    off-diagonal, as in Algorithm 1; the diagonal (variance) keeps it.

    ``grad_norms``: backward appends ``(||z_c M||^2, ||grad_y||^2)``. With many
    more rows than channels (``n >= 10 d``) the first is
    :math:`\langle S M, M\rangle`, ``S`` this process's scatter of the rows
    (``d^3`` work, at most a tenth of the ``n d^2`` products), and the backward
    keeps its fused multiply-add; otherwise ``z_c M`` is formed on its own and
    its norm taken (no extra products, one extra pass over ``n x d``).
    """

    @staticmethod
    def forward(ctx, x, alpha, beta, eps, delta, channel_dim, world_size, stats, sample_ratio,
                cov_scale, grad_norms):
        layout = _Layout.of(x, channel_dim)
        with torch.autocast(x.device.type, enabled=False):
            z = layout.samples(x, _stat_dtype(x.dtype))
            idx = _sample_positions(z, layout, sample_ratio)
            if idx is not None:
                z = _take(z, layout, idx)
            mean, C, n, scatter = _mean_and_covariance(z, layout, world_size)
            del z
            beta = beta * _cov_factor(cov_scale, n)
            if stats is not None:
                stats.append(_vcreg_of_covariance(C, alpha, beta, eps, delta).detach())
            G = _vcreg_grad_of_covariance(C, alpha, beta, eps, delta)
            M = (G + G.T) * (world_size / (n - 1))
        ctx.layout, ctx.idx, ctx.grad_norms = layout, idx, grad_norms
        ctx.added_sq = None
        rows = x.numel() // layout.d if idx is None else None
        if grad_norms is not None and rows is not None and rows >= 10 * layout.d:
            ctx.added_sq = (scatter @ M).mul_(M).sum().clamp_min(0).detach()
        ctx.save_for_backward(x, mean, M)
        # A view, so autograd records this Function without copying x.
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_y):
        x, mean, M = ctx.saved_tensors
        layout, idx = ctx.layout, ctx.idx
        norms = ctx.grad_norms
        # the added gradient is formed on its own when its norm is not known yet
        separate = norms is not None and ctx.added_sq is None
        if norms is not None:
            grad_y_sq = torch.linalg.vector_norm(grad_y, dtype=M.dtype).square()
        with torch.autocast(x.device.type, enabled=False):
            # Re-centre rather than expanding z_c M = z M - 1 mean^T M: the expanded
            # form loses ~|mean|/std digits in float32 and measured no faster.
            z = layout.samples(x, M.dtype)
            if idx is not None:
                z = _take(z, layout, idx)
            z_c = z - (mean[:, None] if layout.batched else mean)
            del z
            grad_in = layout.samples(grad_y, M.dtype)
            if idx is not None:  # only the sampled samples get the regularizer's gradient
                grad_sampled = (torch.bmm(M.expand(z_c.shape[0], -1, -1), z_c) if layout.batched
                                else z_c @ M)
                if norms is not None:
                    added_sq = torch.linalg.vector_norm(grad_sampled).square()
                # grad_in may be a view of grad_y, which must not be written to
                grad_z = grad_in.clone().index_add_(2 if layout.batched else 0, idx, grad_sampled)
            elif separate:
                added = (torch.bmm(M.expand(z_c.shape[0], -1, -1), z_c) if layout.batched
                         else z_c @ M)
                added_sq = torch.linalg.vector_norm(added).square()
                grad_z = added.add_(grad_in)
                del added
            elif layout.batched:
                grad_z = torch.baddbmm(grad_in, M.expand(z_c.shape[0], -1, -1), z_c)
            else:
                grad_z = torch.addmm(grad_in, z_c, M)  # M is symmetric: rows times M
        if norms is not None:
            norms.append(((ctx.added_sq if ctx.added_sq is not None else added_sq).detach(),
                          grad_y_sq.detach()))
        grad_x = layout.restore(grad_z).to(x.dtype)
        return grad_x, None, None, None, None, None, None, None, None, None, None


def vcreg_fast(x: torch.Tensor,
               alpha: float,
               beta: float,
               eps: float = 1e-4,
               delta: Optional[float] = None,
               channel_dim: int = 1,
               sync: bool = False,
               stats: Optional[List[torch.Tensor]] = None,
               sample_ratio: float = 1.0,
               cov_scale: str = 'eq2',
               grad_norms: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None
               ) -> torch.Tensor:
    r"""Gradient-only VCReg: returns ``x``; backward adds :math:`\nabla_x\ell_{vcreg}`.

    ``y = vcreg_fast(x, ...)`` has the values, dtype and shape of ``x``; for any
    downstream loss ``f``, ``d f(y) / d x = d f / d y + d vcreg_loss(x) / d x``
    (the same arguments). The statistics are computed once in the forward pass
    without building a graph; the backward is the closed form derived in
    :class:`_VCRegFast` (one GEMM for ``C`` forward, one for ``z_c M``
    backward). Arguments are those of :func:`vcreg_loss`, plus:

    Args:
        stats: if a list, the detached loss value (0-dim tensor) is appended to
            it; it costs ``O(d^2)`` on top of ``C``, which is computed anyway.
        sample_ratio: in (0, 1]. Below 1, ``C`` and the mean are estimated from a
            random fraction of the samples (of the spatial positions, shared by the
            batch, for ``(N, C, H, W)`` maps) and only those samples receive the
            gradient, which is that of :math:`\ell_{vcreg}` of the subset. ``C`` of
            the subset is an unbiased estimate of ``C``; the gradient per sampled row
            is about ``1/ratio`` times the exact one, so its expectation over the
            draw is close to the exact gradient (the loss is not linear in ``C``, so
            not equal). It cuts the two ``n d^2`` products by ``ratio``: the way to
            a small overhead on wide, high-resolution maps (ResNet stage 1), traded
            for gradient noise. 1 (exact) is the default.
        cov_scale: ``'eq2'`` or ``'algorithm1'`` as in :func:`vcreg_loss`: the
            backward adds the gradient of that loss (``'algorithm1'``: the
            paper's Algorithm 1, whose covariance gradient is ``n - 1`` times
            Eq. 2's; module docstring).
        grad_norms: if a list, the backward appends one pair of detached 0-dim
            tensors ``(||g_v||^2, ||g_y||^2)``: the squared Frobenius norm of the
            gradient VCReg adds and of the incoming (downstream) gradient
            ``grad_y``, so ``sqrt(sum g_v) / sqrt(sum g_y)`` over the pairs of a
            step is VCReg's gradient share. Cheap: ``d x d`` work and one
            reduction over ``grad_y``.

    Returns:
        A view of ``x`` recorded by autograd. Modifying it in place raises
        (autograd forbids in-place edits of a custom Function's view output):
        ``.clone()`` it first if needed. When ``x`` does not require grad or
        grad mode is off there is nothing to inject: ``x`` itself is returned
        and only ``stats`` (if given) is computed. With ``sync=True`` all ranks
        must take the same branch, since statistics are all-reduced.
    """
    _check_hparams(eps, delta)
    _check_cov_scale(cov_scale)
    if not 0 < sample_ratio <= 1:
        raise ValueError(f'sample_ratio is the fraction of samples used for the statistics '
                         f'and must be in (0, 1], got {sample_ratio}')
    if not (torch.is_grad_enabled() and x.requires_grad):
        _Layout.of(x, channel_dim)  # same argument errors as the training path
        if stats is not None:
            with torch.no_grad():
                stats.append(vcreg_loss(x, alpha, beta, eps, delta, channel_dim, sync,
                                        cov_scale))
        return x
    return _VCRegFast.apply(x, alpha, beta, eps, delta, channel_dim, _world_size(sync),
                            stats, sample_ratio, cov_scale, grad_norms)


# --------------------------------------------------------------------------- demean


def batch_demean(x: torch.Tensor,
                 channel_dim: int = 1,
                 sync: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""The paper's batch mean removal: :math:`y = x - \bar x`, per channel.

    App. A: "with the addition of a mean removal layer along the batch preceding
    the VCReg layer"; Algorithm 1: "we apply a batch demean operation before
    calling the function". The mean is over the same axes VCReg reads as samples
    (every axis but ``channel_dim``: batch and spatial positions / tokens):

    .. math::

        \bar x = \frac{1}{n} \sum_{k=1}^{n} x_k, \qquad y_k = x_k - \bar x

    Differentiable: the backward is :math:`g - \frac{1}{n}\sum_k g_k` per channel
    (the projection removing the mean of the gradient).

    Args:
        x: features, ``channel_dim`` the feature axis.
        channel_dim: the feature axis.
        sync: the mean of the joined batch of all ranks (sums and counts
            all-reduced; the backward all-reduces the gradient sums, as SyncBN,
            so that DDP's averaging gives the joined batch's gradient). A
            collective: all ranks must call it.

    Returns:
        ``(y, mean)``: ``y`` like ``x`` (same dtype), ``mean`` of shape ``(d,)``
        in float32 (float64 for float64 input), part of the graph (detach it to
        update a running mean).
    """
    if x.dim() < 2 or not -x.dim() <= channel_dim < x.dim():
        raise ValueError(f'channel_dim={channel_dim} does not fit x of shape {tuple(x.shape)}: '
                         f'batch_demean needs at least 2 axes (samples and channels)')
    k = channel_dim % x.dim()
    d = x.shape[k]
    dims = [i for i in range(x.dim()) if i != k]
    n = x.numel() // max(d, 1)
    world_size = _world_size(sync)
    with torch.autocast(x.device.type, enabled=False):
        total = x.sum(dim=dims, dtype=_stat_dtype(x.dtype))
        if world_size > 1:
            count = torch.tensor([n], dtype=torch.int64, device=x.device)
            dist.all_reduce(count)
            n = int(count.item())
        if n < 1:
            raise ValueError(f'batch_demean got no samples (x of shape {tuple(x.shape)})')
        mean = sum_over_ranks(total, world_size) / n
        shape = [1] * x.dim()
        shape[k] = d
        return x - mean.to(x.dtype).view(shape), mean


# --------------------------------------------------------------------------- diagnostics


def vcreg_grad_share(x: torch.Tensor,
                     grad_task: torch.Tensor,
                     alpha: float = 1.0,
                     beta: float = 1.0,
                     eps: float = 1e-4,
                     delta: Optional[float] = None,
                     channel_dim: int = 1,
                     cov_scale: str = 'eq2') -> torch.Tensor:
    r"""VCReg's gradient share at one tensor, through autograd (a diagnostic).

    :math:`\|\nabla_x \ell\|_F / \|g\|_F`, with :math:`\ell` = ``vcreg_loss(x, ...)``
    (these arguments, statistics of this process only) and :math:`g` =
    ``grad_task``, the gradient of the rest of the objective w.r.t. ``x``. It is
    what :func:`vcreg_fast`'s ``grad_norms`` gives for one tensor, for the
    explicit form; costs a graph of the statistics and one backward. Over
    several tensors, combine squared norms: ``sqrt(sum ||g_v||^2) /
    sqrt(sum ||g||^2)``.

    Returns:
        0-dim tensor (float32, float64 for float64 input); ``inf`` when
        ``grad_task`` is zero.
    """
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = vcreg_loss(leaf, alpha, beta, eps, delta, channel_dim, False, cov_scale)
        grad_v, = torch.autograd.grad(loss, leaf)
    dtype = _stat_dtype(x.dtype)
    return (torch.linalg.vector_norm(grad_v, dtype=dtype)
            / torch.linalg.vector_norm(grad_task, dtype=dtype))
