r"""SIM / ρSIM: Self Identity Mapping regularization.

"Self Identity Mapping" (SIM; ρSIM is its token-sampled form), Cai et al.; the
authors' reference code is SIM-pytorch. Each regularized block ``l`` maps
:math:`z_{l-1} \to z_l`; a small reconstructor predicts the (stopped-gradient)
block input from the block output, pushing the block to keep the information
its input carried.

Eq. 1 (total regularizer; the block losses are summed, a 'mean' over blocks is
the alternative offered by callers):

.. math::

    \mathcal{L}_{SIM} = \lambda \sum_{l} \mathcal{L}_l

Eq. 4 (ρSIM block loss): draw a set :math:`S` of
:math:`n = \max(2, \mathrm{round}(\rho L))` of the :math:`L` token positions
(at least 2: standardizing a single token gives zero, so no loss and no gradient),
project the target side with :math:`H_1` and the output side with
:math:`H_2`, predict with :math:`G`, standardize both over the :math:`n`
sampled tokens (per sample and channel, :math:`\mathcal{N}`) and take the
mean squared error:

.. math::

    t = \mathcal{N}\bigl(H_1(\mathrm{sg}(z_{l-1})_S)\bigr), \quad
    p = \mathcal{N}\bigl(G(H_2(z_{l,S}))\bigr), \quad
    \mathcal{L}_l = \frac{1}{N n D} \sum_{b,k,c} (p_{bkc} - t_{bkc})^2

:math:`H_1, H_2` (3-layer MLPs) and :math:`G` (linear) are modules owned by the
caller; here they are callables acting on the last (channel) axis. Only the
raw input :math:`z_{l-1}` is detached, so :math:`H_1` still learns through the
target branch. (The authors' code instead shares one projector for both sides
and computes the target projection under ``no_grad``; this module follows the
paper's separate :math:`H_1` and :math:`H_2`.)

Tensors in token layout are ``(N, L, C)``: batch, tokens, channels.
"""
import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    'LOSS_KINDS', 'resample_to', 'to_tokens', 'sample_token_indices', 'gather_tokens',
    'standardize', 'sim_reconstruction_loss', 'rho_sim_block_loss', 'sim_block_loss'
]


def _check_rho(rho: float) -> None:
    if not 0 < rho <= 1:
        raise ValueError(f'rho is the fraction of token positions sampled and must be in '
                         f'(0, 1], got rho={rho}')


# --------------------------------------------------------------------------- grids and tokens


def resample_to(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Resample a ``(N, C, H, W)`` map to spatial ``size = (h, w)``.

    When ``H`` and ``W`` are integer multiples of ``h`` and ``w`` (a strided conv
    or patch merging), each output position covers an exact ``H/h x W/w`` cell
    of the input, and the area average over that cell is the low-pass that
    matches what the block saw (adaptive average pooling). Any other change
    (upsampling, non-integer factors) uses bilinear interpolation with
    ``align_corners=False``, which treats pixels as cell centres like pooling
    does. Equal sizes return ``x`` unchanged.
    """
    if x.dim() != 4:
        raise ValueError(f'resample_to expects a (N, C, H, W) map, got shape {tuple(x.shape)}')
    h, w = size
    H, W = x.shape[-2:]
    if (H, W) == (h, w):
        return x
    if H % h == 0 and W % w == 0:
        return F.adaptive_avg_pool2d(x, (h, w))
    return F.interpolate(x, size=(h, w), mode='bilinear', align_corners=False)


def to_tokens(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """``(N, L, C)`` tokens from ``(N, C, H, W)`` (``channel_dim=1``) or ``(N, L, C)``
    (``channel_dim=-1``).

    For a contiguous map this is a transposed view, no copy: gathering a few
    tokens from it afterwards copies only those tokens.
    """
    if x.dim() == 4 and channel_dim in (1, -3):
        return x.flatten(2).transpose(1, 2)
    if x.dim() == 3 and channel_dim in (2, -1):
        return x
    raise ValueError(
        f'to_tokens takes a (N, C, H, W) map with channel_dim=1 or (N, L, C) tokens with '
        f'channel_dim=-1, got shape {tuple(x.shape)} with channel_dim={channel_dim}')


def sample_token_indices(N: int,
                         L: int,
                         rho: float,
                         per_sample: bool = False,
                         generator: Optional[torch.Generator] = None,
                         device=None) -> torch.Tensor:
    """Indices of ``n = max(2, round(rho * L))`` distinct token positions (the set S).

    At least two, because :func:`standardize` over one token is identically zero: a
    block sampled at one position would add nothing and silently train nothing.
    ``L < 2`` is an error for the same reason.

    Python's ``round`` (half to even) sets ``n``. Returns one random subset
    shared by the whole batch, shape ``(n,)``, or with ``per_sample=True`` an
    independent subset per sample, shape ``(N, n)``. ``generator`` makes the
    draw reproducible; it is used on its own device and the result is moved to
    ``device``.
    """
    _check_rho(rho)
    if L < 1 or N < 1:
        raise ValueError(f'need at least one sample and one token, got N={N}, L={L}')
    if L < 2:
        raise ValueError(
            f'rhoSIM standardizes over the sampled token positions and needs at least 2, but '
            f'this block output has L={L} (e.g. a 1x1 map): leave the block out of `layers` '
            'or use a larger input')
    n = max(2, round(rho * L))
    draw_device = generator.device if generator is not None else device
    if per_sample:
        idx = torch.rand(N, L, generator=generator, device=draw_device).argsort(dim=1)[:, :n]
    else:
        idx = torch.randperm(L, generator=generator, device=draw_device)[:n]
    return idx if device is None else idx.to(device)


def gather_tokens(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``(N, n, C)`` tokens at ``idx`` of shape ``(n,)`` (shared) or ``(N, n)`` (per sample)."""
    if idx.dim() == 1:
        return tokens[:, idx]
    if idx.dim() == 2 and idx.shape[0] == tokens.shape[0]:
        return tokens.gather(1, idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    raise ValueError(f'idx must have shape (n,) or (N, n) with N={tokens.shape[0]}, '
                     f'got {tuple(idx.shape)}')


# ---------------------------------------------------------------- standardization and losses


def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r""":math:`\mathcal{N}(z) = (z - \mu) / \sqrt{\sigma^2 + \epsilon}` over the token axis (dim 1).

    Mean and variance are per sample and per channel over the sampled tokens;
    the variance is the biased one (divide by ``n``), as in normalization
    layers, so it is defined for ``n = 1`` too. With a single token
    ``z - mu = 0`` and the result is all zeros: the loss then carries no signal
    (choose ``rho`` so that ``n >= 2``).
    """
    var, mean = torch.var_mean(z, dim=1, correction=0, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


def _mse(pred, target):
    return F.mse_loss(pred, target)


def _l2(pred, target):
    return torch.linalg.vector_norm(pred - target, dim=-1).mean()


def _l1(pred, target):
    return F.l1_loss(pred, target)


def _smooth_l1(pred, target):
    return F.smooth_l1_loss(pred, target, beta=1.0)


def _cos(pred, target):
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def _kl(pred, target):
    # KL(softmax(target) || softmax(pred)): the target distribution weights the
    # log-ratio, as in distillation, so pred is pushed to cover target's mass.
    kl = F.kl_div(F.log_softmax(pred, dim=-1), F.log_softmax(target, dim=-1),
                  reduction='none', log_target=True)
    return kl.sum(dim=-1).mean()


_RECONSTRUCTION_LOSSES = {
    'mse': _mse,
    'l2': _l2,
    'l1': _l1,
    'smooth_l1': _smooth_l1,
    'cos': _cos,
    'kl': _kl,
}

#: The valid ``kind`` values of :func:`sim_reconstruction_loss`.
LOSS_KINDS = tuple(_RECONSTRUCTION_LOSSES)


def sim_reconstruction_loss(pred: torch.Tensor, target: torch.Tensor,
                            kind: str = 'mse') -> torch.Tensor:
    """Distance between predicted and target tokens ``(..., D)``, averaged to a scalar.

    kinds:
        ``'mse'``: mean over all elements of ``(pred - target)^2`` (the paper's Eq. 4).
        ``'l2'``: Euclidean distance per token over channels, mean over tokens
        (un-squared; the authors' code).
        ``'l1'``: mean absolute difference.
        ``'smooth_l1'``: ``F.smooth_l1_loss`` with ``beta=1.0``, mean.
        ``'cos'``: ``1 - cos(pred, target)`` per token along channels, mean.
        ``'kl'``: ``KL(softmax(target) || softmax(pred))`` over channels per
        token, mean over tokens.

    ``target`` is not detached here: in ρSIM the target is ``H1(sg(z_{l-1}))``
    and ``H1`` must receive gradients, so stopping the gradient is the caller's
    job, on the raw ``z_{l-1}``.
    """
    if kind not in _RECONSTRUCTION_LOSSES:
        raise ValueError(f'unknown SIM reconstruction loss kind={kind!r}; valid kinds: '
                         f'{", ".join(repr(k) for k in LOSS_KINDS)}')
    if pred.shape != target.shape:
        raise ValueError(f'pred and target must have the same shape, got {tuple(pred.shape)} '
                         f'and {tuple(target.shape)}')
    return _RECONSTRUCTION_LOSSES[kind](pred, target)


# --------------------------------------------------------------------------- block loss


def _square_grid(L: int, name: str) -> Tuple[int, int]:
    """(side, number of leading non-grid tokens) for a square token grid."""
    side = math.isqrt(L)
    if side * side == L:
        return side, 0
    side = math.isqrt(L - 1)
    if L > 1 and side * side == L - 1:
        return side, 1  # a leading CLS token
    raise ValueError(
        f'{name} has {L} tokens and the block input and output token counts differ; to '
        f'match positions the tokens must form a square grid, optionally after one leading '
        f'CLS token, but neither {L} nor {L - 1} is a perfect square. Pass (N, C, H, W) maps '
        f'with channel_dim=1 instead, or regularize a block that keeps the token count.')


def _matched_tokens(z_in: torch.Tensor, z_out: torch.Tensor,
                    channel_dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Token views of input and output with the same positions, ``(N, L, C_in)``
    and ``(N, L, C_out)``; the input is resampled onto the output's grid."""
    if z_in.dim() != z_out.dim() or z_in.shape[0] != z_out.shape[0]:
        raise ValueError(f'z_in and z_out must share layout and batch size, got shapes '
                         f'{tuple(z_in.shape)} and {tuple(z_out.shape)}')
    if z_in.dim() == 4:
        to_tokens(z_out, channel_dim)  # validates the layout before any resampling
        z_in = resample_to(z_in, tuple(z_out.shape[-2:]))
        return to_tokens(z_in, channel_dim), to_tokens(z_out, channel_dim)
    t_in, t_out = to_tokens(z_in, channel_dim), to_tokens(z_out, channel_dim)
    if t_in.shape[1] == t_out.shape[1]:
        return t_in, t_out
    # Different token counts: only the square patch grids correspond; CLS
    # tokens have no spatial position and are left out.
    side_in, cls_in = _square_grid(t_in.shape[1], 'z_in')
    side_out, cls_out = _square_grid(t_out.shape[1], 'z_out')
    grid_in = t_in[:, cls_in:].transpose(1, 2).reshape(t_in.shape[0], -1, side_in, side_in)
    grid_in = resample_to(grid_in, (side_out, side_out))
    return to_tokens(grid_in, 1), t_out[:, cls_out:]


def rho_sim_block_loss(z_in: torch.Tensor,
                       z_out: torch.Tensor,
                       h1: Callable[[torch.Tensor], torch.Tensor],
                       h2: Callable[[torch.Tensor], torch.Tensor],
                       g: Callable[[torch.Tensor], torch.Tensor],
                       rho: float,
                       channel_dim: int = 1,
                       kind: str = 'mse',
                       per_sample: bool = False,
                       eps: float = 1e-5,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""ρSIM loss :math:`\mathcal{L}_l` of one block (Eq. 4, module docstring).

    Args:
        z_in: block input :math:`z_{l-1}`; its gradient is stopped here.
        z_out: block output :math:`z_l`.
        h1: target projector :math:`H_1`, ``(..., C_in) -> (..., D)``.
        h2: output projector :math:`H_2`, ``(..., C_out) -> (..., D')``.
        g: predictor :math:`G`, ``(..., D') -> (..., D)``.
        rho: fraction of token positions sampled, in (0, 1].
        channel_dim: 1 for ``(N, C, H, W)`` maps, -1 for ``(N, L, C)`` tokens.
        kind: reconstruction distance (:func:`sim_reconstruction_loss`).
        per_sample: an independent position set per sample instead of one
            shared by the batch.
        eps: added to the variance in :func:`standardize`.
        generator: for reproducible sampling.

    When the grids differ, the input is resampled onto the output's grid with
    :func:`resample_to` (4-D maps). Token maps with different counts are read
    as square grids after dropping one leading CLS token where present
    (``L`` or ``L - 1`` a perfect square); the CLS tokens are then not used.
    The same positions are sampled on both sides, and only those ``n`` tokens
    are projected.
    """
    _check_rho(rho)
    t_in, t_out = _matched_tokens(z_in.detach(), z_out, channel_dim)
    N, L = t_out.shape[:2]
    idx = sample_token_indices(N, L, rho, per_sample, generator, device=z_out.device)
    target = standardize(h1(gather_tokens(t_in, idx)), eps)
    pred = standardize(g(h2(gather_tokens(t_out, idx))), eps)
    return sim_reconstruction_loss(pred, target, kind)


def sim_block_loss(z_in: torch.Tensor,
                   z_out: torch.Tensor,
                   decoder: Callable[[torch.Tensor], torch.Tensor],
                   channel_dim: int = 1,
                   kind: str = 'mse') -> torch.Tensor:
    r"""SIM loss of one block, the unsampled form: reconstruct :math:`\mathrm{sg}(z_{l-1})`.

    .. math::

        \mathcal{L}_l = d\bigl(D(z_l),\ \mathrm{sg}(z_{l-1})\bigr)

    ``decoder`` (:math:`D`, ``(..., C_out) -> (..., C_in)``) is applied to every
    token of ``z_out``; the target is every token of ``z_in`` on ``z_out``'s
    grid (resampled and CLS-matched as in :func:`rho_sim_block_loss`). No
    sampling, projection or standardization; ``kind`` picks the distance ``d``
    (:func:`sim_reconstruction_loss`).
    """
    t_in, t_out = _matched_tokens(z_in.detach(), z_out, channel_dim)
    return sim_reconstruction_loss(decoder(t_out), t_in, kind)
