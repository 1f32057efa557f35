"""The collectives the losses share (not a paper: the plumbing of ``sync``/``gather``).

Every function is a no-op without an initialized process group (or when switched off),
so single-process code calls them unconditionally. Pure torch, like the rest of
:mod:`sslreg.losses`: usable from plain PyTorch and from OpenMMLab alike.

* :func:`world_info`: (world size, rank).
* :func:`all_gather_with_grad`: every rank's rows, differentiable (backward all-reduces
  the gradient and keeps this rank's slice), ranks may hold different row counts.
* :func:`all_gather_plain`: the same without gradient.
* :func:`sum_over_ranks`: an all-reduce sum whose backward sums the gradients over ranks.
* :func:`rank_mean`: the mean over ranks of a list of tensors (None stays None), one
  all-reduce.
* :func:`all_reduce_sum_`: in-place sum over ranks of statistics (no gradient), one
  all-reduce per tensor.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

__all__ = ['world_info', 'all_gather_with_grad', 'all_gather_plain', 'sum_over_ranks',
           'rank_mean', 'all_reduce_sum_']


def world_info(enabled: bool = True) -> Tuple[int, int]:
    """(world size, rank), (1, 0) without an initialized process group or when not ``enabled``."""
    if enabled and dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenation of every rank's rows; backward: all-reduce, keep own slice."""

    @staticmethod
    def forward(ctx, x, sizes, rank):
        ctx.sizes, ctx.rank = sizes, rank
        longest = max(sizes)
        if x.shape[0] < longest:  # all_gather wants equal shapes: pad, then strip
            x = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))])
        parts = [torch.empty_like(x) for _ in sizes]
        dist.all_gather(parts, x.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def _sizes(n: int, world_size: int, device) -> list:
    t = torch.tensor([n], dtype=torch.int64, device=device)
    out = [torch.zeros_like(t) for _ in range(world_size)]
    dist.all_gather(out, t)
    return [int(o.item()) for o in out]


def all_gather_with_grad(x: torch.Tensor, gather: bool = True) -> Tuple[torch.Tensor, int, int]:
    """All ranks' ``x`` concatenated along dim 0 (rank order), differentiable.

    Returns ``(gathered, offset, total)``: the offset of this rank's rows in the
    result and the number of rows. Without a process group: ``(x, 0, len(x))``.
    """
    world_size, rank = world_info(gather)
    if world_size == 1:
        return x, 0, x.shape[0]
    sizes = _sizes(x.shape[0], world_size, x.device)
    return _AllGatherWithGrad.apply(x, sizes, rank), sum(sizes[:rank]), sum(sizes)


def all_gather_plain(x: torch.Tensor, gather: bool = True) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0, without gradient."""
    world_size, _ = world_info(gather)
    if world_size == 1:
        return x
    with torch.no_grad():
        return _AllGatherWithGrad.apply(x, _sizes(x.shape[0], world_size, x.device),
                                        dist.get_rank())


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; backward sums the gradients over ranks too.

    When every rank computes the same loss from the reduced sums, the backward sum makes
    each rank's gradient that of the sum of all ranks' losses (the DDP-correct scale, see
    :mod:`sslreg.losses.vcreg`). Written here rather than using
    ``torch.distributed.nn.functional.all_reduce``, which has the same semantics but is
    deprecated.
    """

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(t: torch.Tensor, world_size: Optional[int] = None) -> torch.Tensor:
    """All-reduce sum, differentiable (see :class:`_AllReduceSum`); ``t`` itself alone."""
    world_size = world_info()[0] if world_size is None else world_size
    return _AllReduceSum.apply(t) if world_size > 1 else t


def rank_mean(tensors: Sequence[Optional[torch.Tensor]]) -> List[Optional[torch.Tensor]]:
    """The mean over ranks of each tensor (None stays None: the same entries must be None
    on every rank), in one all-reduce; the tensors themselves when alone."""
    tensors = list(tensors)
    world = world_info()[0]
    present = [t for t in tensors if t is not None]
    if world == 1 or not present:
        return tensors
    flat = torch.cat([t.detach().reshape(-1) for t in present])
    dist.all_reduce(flat)
    flat /= world
    out, offset = [], 0
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        out.append(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


def all_reduce_sum_(*tensors: torch.Tensor, enabled: bool = True) -> None:
    """Sum each tensor over ranks, in place, one all-reduce each in the order given (running
    statistics such as DINO's centre: no gradient); nothing alone or when not ``enabled``."""
    if world_info(enabled)[0] > 1:
        for t in tensors:
            dist.all_reduce(t)
