r"""SIM / ρSIM: Self Identity Mapping regularization.

"Self Identity Mapping" (SIM; ρSIM is its token-sampled form), Cai et al.,
arXiv:2509.18165; the authors' reference code is SIM-pytorch (``sim_loss.py``).
Each regularized block ``l`` maps :math:`z_{l-1} \to z_l`; a small reconstructor
predicts the block input from the block output, pushing the block to keep the
information its input carried.

Eq. 1 (total regularizer):

.. math::

    \mathcal{L}_{SIM} = \lambda \sum_{l} \mathcal{L}_l

Eq. 4 (ρSIM block loss): draw a set :math:`S` of :math:`n` of the :math:`L` token
positions, project both sides, standardize each over the :math:`n` sampled tokens
(per sample and channel, :math:`\mathcal{N}`) and predict the target from the output:

.. math::

    \tilde h_{l-1} = \mathcal{N}\bigl(H_1(z_{l-1,S})\bigr), \quad
    \tilde h_l = \mathcal{N}\bigl(H_2(z_{l,S})\bigr), \quad
    \mathcal{L}_l = \mathrm{MSE}\bigl(\mathrm{sg}(\tilde h_{l-1}),\ G(\tilde h_l)\bigr)

The stop-gradient covers the whole projected, standardized target
:math:`\tilde h_{l-1}`: the target side trains nothing, and it is computed under
``torch.no_grad()`` so no graph is kept for it (the authors' code does the same).
Whether :math:`H_1` learns at all then depends on the head form, which the caller
owns (:mod:`sslreg.regularizers.sim`): shared with the output side, it learns
through the prediction branch; separate, it stays a fixed random projection.

Where the paper and the authors' code differ, :func:`rho_sim_block_loss` takes both:

=====================  ==================================  ==================================
choice                 paper (Eq. 1, 4)                    authors' code (``sim_loss.py``)
=====================  ==================================  ==================================
distance               squared, ``kind='mse'``             per-token L2, ``kind='l2'``
:math:`\mathcal{N}`    ``(z-μ)/sqrt(var+ε)``, biased var   ``(z-μ)/(std+ε)``, unbiased std,
                       (``unbiased=False``)                ε=1e-6 (``unbiased=True,
                                                           eps_on_std=True``)
:math:`n`              ``max(2, round(ρL))``               ``int(ρL)`` (``count='floor'``)
                       (``count='round'``)
predictor G            after :math:`\mathcal{N}`:          before :math:`\mathcal{N}`:
                       :math:`G(\mathcal{N}(H_2 z_l))`      :math:`\mathcal{N}(G(H_2 z_l))`
                       (``predictor='after_norm'``)        (``predictor='before_norm'``)
=====================  ==================================  ==================================

(The block-level reduction, sum or mean over blocks with λ per block, is the
regularizer's.) ``normalize=False`` drops :math:`\mathcal{N}` on both sides, the
unnormalized variants of the paper's Table 10.

Tensors in token layout are ``(N, L, C)``: batch, tokens, channels.
"""
import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

__all__ = [
    'LOSS_KINDS', 'resample_to', 'to_tokens', 'sample_token_indices', 'gather_tokens',
    'standardize', 'sim_reconstruction_loss', 'rho_sim_block_loss', 'sim_block_loss',
    'num_sampled_tokens', 'TOKEN_COUNTS', 'PREDICTOR_POSITIONS'
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


#: How :func:`sample_token_indices` sets the number of sampled positions n.
TOKEN_COUNTS = ('round', 'floor')


def num_sampled_tokens(L: int, rho: float, count: str = 'round') -> int:
    """n of ``L`` positions at fraction ``rho``.

    ``'round'``: ``max(2, round(rho * L))`` (Python's round, half to even), at least two
    because standardizing one token gives zero, so a block sampled at one position would
    silently train nothing. ``'floor'``: ``int(rho * L)`` as the authors' code, an error
    when that is below 2 (where their code gets NaN and drops the block).
    """
    _check_rho(rho)
    if count not in TOKEN_COUNTS:
        raise ValueError(f'count must be one of {TOKEN_COUNTS}, got {count!r}')
    if L < 2:
        raise ValueError(
            f'rhoSIM standardizes over the sampled token positions and needs at least 2, but '
            f'this block output has L={L} (e.g. a 1x1 map): leave the block out of `layers` '
            'or use a larger input')
    if count == 'round':
        return max(2, round(rho * L))
    n = int(rho * L)
    if n < 2:
        raise ValueError(
            f"count='floor' samples int(rho * L) = int({rho} * {L}) = {n} token positions, "
            "but standardizing needs at least 2: raise rho, leave this block out of `layers`, "
            "or use count='round' (at least 2 positions)")
    return n


def sample_token_indices(N: int,
                         L: int,
                         rho: float,
                         per_sample: bool = False,
                         generator: Optional[torch.Generator] = None,
                         device=None,
                         count: str = 'round') -> torch.Tensor:
    """Indices of ``n`` distinct token positions (the set S), n from
    :func:`num_sampled_tokens`.

    Returns one random subset shared by the whole batch, shape ``(n,)``, or with
    ``per_sample=True`` an independent subset per sample, shape ``(N, n)``.
    ``generator`` makes the draw reproducible; it is used on its own device and the
    result is moved to ``device``.
    """
    if L < 1 or N < 1:
        raise ValueError(f'need at least one sample and one token, got N={N}, L={L}')
    n = num_sampled_tokens(L, rho, count)
    draw_device = generator.device if generator is not None else device
    if per_sample:
        idx = torch.rand(N, L, generator=generator, device=draw_device).argsort(dim=1)[:, :n]
    else:
        idx = torch.randperm(L, generator=generator, device=draw_device)[:n]
    return idx if device is None else idx.to(device)


def gather_tokens(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``(N, n, C)`` tokens at ``idx`` of shape ``(n,)`` (shared) or ``(N, n)`` (per sample).

    Tokens that are the transposed view of ``(N, C, L)`` maps (:func:`to_tokens` of an
    ``(N, C, H, W)`` map) are gathered along the maps' own position axis: the backward's
    scatter then writes a gradient in the maps' memory order, which the autograd engine
    adds to the block output's other gradient as one contiguous pass. Gathering from the
    token view instead hands it a transposed gradient, and that strided add measured
    ~10x slower on CPU (most of ρSIM's cost on a ResNet-50).
    """
    if idx.dim() not in (1, 2) or (idx.dim() == 2 and idx.shape[0] != tokens.shape[0]):
        raise ValueError(f'idx must have shape (n,) or (N, n) with N={tokens.shape[0]}, '
                         f'got {tuple(idx.shape)}')
    N, L, C = tokens.shape
    idx = idx.expand(N, -1)  # a shared set is the same row for every sample (a view)
    maps = tokens.transpose(1, 2)
    # torch.gather with an expanded index measured 3-6x faster on CPU than advanced
    # indexing or index_select for this shape
    if tokens.stride(-1) != 1 and maps.is_contiguous():
        return maps.gather(2, idx.unsqueeze(1).expand(-1, C, -1)).transpose(1, 2)
    return tokens.gather(1, idx.unsqueeze(-1).expand(-1, -1, C))


# ---------------------------------------------------------------- standardization and losses


def standardize(z: torch.Tensor, eps: float = 1e-5, unbiased: bool = False,
                eps_on_std: bool = False) -> torch.Tensor:
    r""":math:`\mathcal{N}(z)` over the token axis (dim 1), per sample and channel.

    Default (the paper's :math:`\mathcal{N}`, written as normalization layers do it):
    :math:`(z - \mu) / \sqrt{\sigma^2 + \epsilon}` with the biased variance (divide by
    ``n``). ``unbiased=True, eps_on_std=True`` is the authors' code:
    :math:`(z - \mu) / (s + \epsilon)` with the unbiased standard deviation ``s``.
    With a single token ``z - mu = 0`` and the result is all zeros (the biased form;
    the unbiased one is undefined there): the loss then carries no signal.
    """
    var, mean = torch.var_mean(z, dim=1, correction=int(unbiased), keepdim=True)
    scale = var.sqrt() + eps if eps_on_std else torch.sqrt(var + eps)
    return (z - mean) / scale


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


def _wasserstein(pred, target):
    # 1-D Wasserstein-2 (squared) per sample and channel between the empirical
    # distributions of the predicted and target tokens: sort both along the token
    # axis and compare order statistics. It asks the distributions to match, not
    # each token, so it is blind to a permutation of tokens.
    return F.mse_loss(pred.sort(dim=-2).values, target.sort(dim=-2).values)


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
    'wasserstein': _wasserstein,
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
        ``'wasserstein'``: squared 1-D Wasserstein-2 distance per sample and channel
        between the empirical distributions over the token axis (``-2``): the mean of
        ``(sort(pred) - sort(target))^2``. The paper's Table 10 names a Wasserstein
        loss without a formula; this is sslreg's reading.

    ``target`` is not detached here: stopping its gradient is the caller's job.
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


#: Where the predictor G acts relative to the output side's standardization.
PREDICTOR_POSITIONS = ('after_norm', 'before_norm')


def _integer_downsampling(z_in: torch.Tensor, z_out: torch.Tensor) -> bool:
    """Whether ``z_in`` is a 4-D map that :func:`resample_to` area-averages by integer
    factors onto ``z_out``'s grid."""
    if z_in.dim() != 4 or z_out.dim() != 4 or z_in.shape[0] != z_out.shape[0]:
        return False
    (H, W), (h, w) = z_in.shape[-2:], z_out.shape[-2:]
    return (H, W) != (h, w) and H % h == 0 and W % w == 0


def _area_pooled_at(x: torch.Tensor, size, idx: torch.Tensor) -> torch.Tensor:
    """``(N, n, C)``: :func:`resample_to` ``(x, size)`` (the area average over each
    ``H/h x W/w`` cell) at the ``n`` positions ``idx`` of the ``(h, w)`` grid, reading only
    those cells of ``x``."""
    N, C, H, W = x.shape
    h, w = size
    sh, sw = H // h, W // w
    idx = idx.expand(N, -1)
    rows, cols = idx // w, idx % w  # (N, n)
    a = torch.arange(sh, device=x.device).view(1, 1, sh, 1)
    b = torch.arange(sw, device=x.device).view(1, 1, 1, sw)
    members = (rows[..., None, None] * sh + a) * W + cols[..., None, None] * sw + b
    cells = x.reshape(N, C, H * W).gather(2, members.reshape(N, 1, -1).expand(-1, C, -1))
    return cells.view(N, C, -1, sh * sw).mean(-1).transpose(1, 2)


def rho_sim_block_loss(z_in: torch.Tensor,
                       z_out: torch.Tensor,
                       target_proj: Callable[[torch.Tensor], torch.Tensor],
                       output_proj: Callable[[torch.Tensor], torch.Tensor],
                       predictor: Callable[[torch.Tensor], torch.Tensor],
                       rho: float,
                       channel_dim: int = 1,
                       kind: str = 'mse',
                       per_sample: bool = False,
                       eps: float = 1e-5,
                       generator: Optional[torch.Generator] = None,
                       normalize: bool = True,
                       unbiased: bool = False,
                       eps_on_std: bool = False,
                       count: str = 'round',
                       predictor_position: str = 'after_norm',
                       checkpoint: bool = False) -> torch.Tensor:
    r"""ρSIM loss :math:`\mathcal{L}_l` of one block (Eq. 4, module docstring).

    Args:
        z_in: block input :math:`z_{l-1}`.
        z_out: block output :math:`z_l`.
        target_proj: :math:`H_1`, ``(..., C_in) -> (..., D)``; run under ``no_grad``:
            the stop-gradient covers the whole standardized target.
        output_proj: :math:`H_2`, ``(..., C_out) -> (..., D)``.
        predictor: :math:`G`, ``(..., D) -> (..., D)``.
        rho: fraction of token positions sampled, in (0, 1].
        channel_dim: 1 for ``(N, C, H, W)`` maps, -1 for ``(N, L, C)`` tokens.
        kind: reconstruction distance (:func:`sim_reconstruction_loss`).
        per_sample: an independent position set per sample instead of one
            shared by the batch (the authors' ``token_sampling_type='v1'``).
        eps, unbiased, eps_on_std: the standardization (:func:`standardize`).
        generator: for reproducible sampling.
        normalize: False skips :math:`\mathcal{N}` on both sides.
        count: ``'round'`` or ``'floor'`` (:func:`num_sampled_tokens`).
        predictor_position: ``'after_norm'`` (Eq. 4, :math:`G(\mathcal{N}(H_2 z))`) or
            ``'before_norm'`` (authors' code, :math:`\mathcal{N}(G(H_2 z))`).
        checkpoint: recompute the prediction branch in backward instead of keeping
            its activations (saves memory, costs one more small forward).

    When the grids differ, the input is resampled onto the output's grid with
    :func:`resample_to` (4-D maps). Token maps with different counts are read
    as square grids after dropping one leading CLS token where present
    (``L`` or ``L - 1`` a perfect square); the CLS tokens are then not used.
    The same positions are sampled on both sides, and only those ``n`` tokens
    are projected.
    """
    _check_rho(rho)
    if predictor_position not in PREDICTOR_POSITIONS:
        raise ValueError(f'predictor_position must be one of {PREDICTOR_POSITIONS}, '
                         f'got {predictor_position!r}')
    z_in = z_in.detach()
    pooled_later = _integer_downsampling(z_in, z_out)
    # an integer-factor downsampling block: pool only the sampled cells (below), not the
    # whole input map
    t_in, t_out = _matched_tokens(z_out if pooled_later else z_in, z_out, channel_dim)
    N, L = t_out.shape[:2]
    idx = sample_token_indices(N, L, rho, per_sample, generator, z_out.device, count)

    def norm(z):
        return standardize(z, eps, unbiased, eps_on_std) if normalize else z

    with torch.no_grad():
        sampled_in = (_area_pooled_at(z_in, z_out.shape[-2:], idx) if pooled_later
                      else gather_tokens(t_in, idx))
        target = norm(target_proj(sampled_in))

    def prediction_loss(tokens_out):
        h = output_proj(gather_tokens(tokens_out, idx))
        pred = predictor(norm(h)) if predictor_position == 'after_norm' else norm(predictor(h))
        return sim_reconstruction_loss(pred, target, kind)

    if checkpoint and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(prediction_loss, t_out, use_reentrant=False)
    return prediction_loss(t_out)


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
