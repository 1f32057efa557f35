r"""SER: the patch-wise equivariance NT-Xent of Soft Equivariance Regularization.

Lee, Kim, Kim, Lee, Lee, "Soft Equivariance Regularization for Invariant
Self-Supervised Learning" (ICLR 2026, arXiv:2603.06693); authors' code
github.com/aitrics-chris/SER (``builder/moco.py``, ``equiv``).

Two views :math:`x_1 = g_1 x`, :math:`x_2 = g_2 x` of an image, token maps
:math:`z_1, z_2` after block :math:`k`, projected by a 1x1 MLP :math:`P` (two
layers, GELU, to 512 channels; the caller's module). With the relative transform
:math:`g_{rel} = g_2 g_1^{-1}` acting on the token lattice as :math:`\rho`
(:mod:`sslreg.geometry`), the anchors are view 1 mapped onto view 2's lattice and
the candidates are view 2, both L2-normalized:

.. math::

    u_i = \frac{[\rho_{g_{rel}} P(z_1)]_i}{\lVert\cdot\rVert}, \qquad
    v_j = \frac{[P(z_2)]_j}{\lVert\cdot\rVert}

where :math:`i, j` run over all tokens (image, location) of the equivariance
sub-batch. The positive of :math:`u_i` is :math:`v_i` (same image, same location);
the negatives are the tokens of **other images** only (other locations of the same
image are left out, as in the paper), :math:`b(j)` being the image of token
:math:`j`:

.. math::

    \ell_i(u, v) = -\log \frac{\exp(u_i^\top v_i / \tau)}
        {\exp(u_i^\top v_i / \tau) + \sum_{j:\, b(j) \neq b(i)} \exp(u_i^\top v_j / \tau)}

    \mathcal{L}_{equiv} = \tfrac12 \Bigl(\frac{1}{N_2}\sum_{i} \ell_i(u^{1\to2}, v^{2})
        + \frac{1}{N_1}\sum_{i} \ell_i(u^{2\to1}, v^{1})\Bigr)

(the second term maps view 2 onto view 1 with :math:`\rho_{g_{rel}^{-1}}`), and the
training loss is :math:`\mathcal{L} = \mathcal{L}_{inv} + \lambda \mathcal{L}_{equiv}`.

:func:`ser_token_map_loss` is this objective end to end: the two projected token maps
and the relative group elements in, :math:`\mathcal{L}_{equiv}` out (it applies
:math:`\rho_{g_{rel}}`, :math:`\rho_{g_{rel}^{-1}}`, flattens, and calls
:func:`ser_equivariance_loss`). The action :math:`\rho` is passed in as a callable
(sslreg's is :func:`sslreg.geometry.act`): :mod:`sslreg.losses` imports nothing of
sslreg outside itself.

Distributed (``gather=True``)
-----------------------------
Candidates (and their image ids) are gathered from every rank by
:func:`all_gather_with_grad`, whose backward all-reduces the incoming gradient and
hands each rank the slice of its own rows: every rank's anchors push on every
rank's candidates, so the gradient reaching the encoder is that of the joint batch.
(The authors' ``concat_all_gather`` runs under ``torch.no_grad``, which cuts this
path: their equivariance loss trains nothing.) Ranks may hold different numbers of
tokens. Anchors stay local; each rank returns
:math:`\frac{W}{N_{global}} \sum_{i \in \text{local}} \ell_i`, so the mean of the
ranks' values -- and, since DistributedDataParallel averages gradients, the
gradient -- equals the single-process loss of the joined batch exactly, even when
ranks hold different token counts. All ranks must call it (collective).
"""
from typing import Any, Callable, Sequence, Tuple

import torch
import torch.nn.functional as F

from .distributed import all_gather_plain, all_gather_with_grad, sum_over_ranks, world_info

__all__ = ['patch_nt_xent', 'ser_equivariance_loss', 'ser_token_map_loss', 'flatten_maps']


def patch_nt_xent(u: torch.Tensor, v: torch.Tensor, image_ids: torch.Tensor, tau: float,
                  gather: bool = False) -> torch.Tensor:
    r"""One direction of :math:`\mathcal{L}_{equiv}`:
    :math:`\frac{W}{N_{global}}\sum_i \ell_i(u, v)`.

    Args:
        u: ``(N, D)`` anchors (view a mapped onto view b's lattice), this rank's.
        v: ``(N, D)`` candidates (view b), row ``i`` the positive of ``u[i]``.
        image_ids: ``(N,)`` int, the image of each token (any labels unique per image
            on this rank; they are made globally unique when gathering).
        tau: temperature :math:`\tau`.
        gather: take candidates from all ranks (module docstring).

    Returns:
        0-dim tensor; without a process group, the mean of :math:`\ell_i`.
    """
    if u.shape != v.shape or u.dim() != 2:
        raise ValueError(f'u and v must both be (N, D) with rows paired, got {tuple(u.shape)} '
                         f'and {tuple(v.shape)}')
    if image_ids.shape != (u.shape[0],):
        raise ValueError(f'image_ids must be ({u.shape[0]},), got {tuple(image_ids.shape)}')
    if not tau > 0:
        raise ValueError(f'tau must be > 0, got {tau}')
    world_size, rank = world_info(gather)
    u = F.normalize(u, dim=1)
    v = F.normalize(v, dim=1)
    ids = image_ids.long()
    if world_size > 1:
        # image labels unique across ranks: shift by the total of lower ranks' labels
        span = torch.tensor([int(ids.max().item()) + 1 if ids.numel() else 0],
                            device=ids.device)
        spans = all_gather_plain(span, gather)
        ids = ids + spans[:rank].sum()
    v_all, offset, _ = all_gather_with_grad(v, gather)
    ids_all = all_gather_plain(ids, gather)
    logits = u @ v_all.T / tau
    n = u.shape[0]
    pos = torch.arange(n, device=u.device) + offset
    same_image = ids[:, None] == ids_all[None, :]
    same_image[torch.arange(n, device=u.device), pos] = False  # keep the positive
    logits = logits.masked_fill(same_image, float('-inf'))
    total = torch.tensor([float(n)], device=u.device, dtype=torch.float64)
    total = sum_over_ranks(total, world_size)  # no grad flows here; a plain all-reduce
    loss_sum = F.cross_entropy(logits, pos, reduction='sum')
    return loss_sum * (world_size / total.item())


def ser_equivariance_loss(u12: torch.Tensor, v2: torch.Tensor, ids2: torch.Tensor,
                          u21: torch.Tensor, v1: torch.Tensor, ids1: torch.Tensor, tau: float,
                          gather: bool = False) -> torch.Tensor:
    r""":math:`\mathcal{L}_{equiv}`, symmetrized: ½ (``patch_nt_xent(u12, v2)`` +
    ``patch_nt_xent(u21, v1)``).

    ``u12``: projected view-1 tokens mapped onto view 2's lattice, row-paired with
    ``v2`` (projected view-2 tokens), ``ids2`` their images; ``u21``, ``v1``, ``ids1``
    the same the other way round. Flattened ``(N, D)`` token rows.
    """
    return 0.5 * (patch_nt_xent(u12, v2, ids2, tau, gather)
                  + patch_nt_xent(u21, v1, ids1, tau, gather))


def flatten_maps(maps: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``(D, h_b, w_b)`` maps (sizes may differ) -> ``(N, D)`` rows and the
    ``(N,)`` image index of each row, row-major over each map."""
    rows, ids = [], []
    for b, m in enumerate(maps):
        r = m.flatten(1).T
        rows.append(r)
        ids.append(torch.full((r.shape[0],), b, dtype=torch.long, device=m.device))
    return torch.cat(rows), torch.cat(ids)



def ser_token_map_loss(p1: Sequence[torch.Tensor], p2: Sequence[torch.Tensor],
                       g_rel: Sequence[Any], act: Callable[..., torch.Tensor],
                       inverse: Callable[[Any], Any], tau: float,
                       gather: bool = False) -> torch.Tensor:
    r""":math:`\mathcal{L}_{equiv}` of the projected token maps of the two views.

    Args:
        p1, p2: per-image :math:`P(z_1)`, :math:`P(z_2)`, ``(D, h, w)`` maps (sizes may
            differ between images and between the views).
        g_rel: per-image :math:`g_{rel} = g_2 g_1^{-1}` (``x_2 = g_rel . x_1``); opaque
            here, only ``act`` and ``inverse`` look inside.
        act: ``act(m, g, out_size=(h, w))`` = :math:`\rho_g m`, resampled onto
            ``out_size`` (the other view's lattice), e.g.
            ``functools.partial(sslreg.geometry.act, mode='bilinear')``.
        inverse: ``g -> g^{-1}``, e.g. :func:`sslreg.geometry.inverse`.
        tau, gather: as :func:`patch_nt_xent`.

    Anchors :math:`u^{1\to2} = \rho_{g_{rel}} P(z_1)` on view 2's lattice against
    :math:`v^2 = P(z_2)`, and :math:`u^{2\to1} = \rho_{g_{rel}^{-1}} P(z_2)` against
    :math:`v^1 = P(z_1)` (module docstring).
    """
    if not len(p1) == len(p2) == len(g_rel):
        raise ValueError(f'{len(p1)} and {len(p2)} maps but {len(g_rel)} group elements')
    u12, u21 = [], []
    for a, b, g in zip(p1, p2, g_rel):
        u12.append(act(a, g, out_size=b.shape[-2:]))
        u21.append(act(b, inverse(g), out_size=a.shape[-2:]))
    u12, ids2 = flatten_maps(u12)
    v2, _ = flatten_maps(p2)
    u21, ids1 = flatten_maps(u21)
    v1, _ = flatten_maps(p1)
    return ser_equivariance_loss(u12, v2, ids2, u21, v1, ids1, tau, gather=gather)
