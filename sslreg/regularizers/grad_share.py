"""How hard a regularizer pulls: the norm of the gradient it adds at the tensors it acts
on, against the gradient arriving there from the rest of the objective.

Shared by :class:`~sslreg.regularizers.VCReg` (its fast backward reports both norms
itself; its explicit form and ρSIM/SIM use :func:`tap_gradient`) and read by
:func:`sslreg.regularizers.report.report_lines`.
"""
import math
from typing import List, Optional, Tuple

import torch

__all__ = ['GradShareStats', 'tap_gradient']

Norms = List[Tuple[torch.Tensor, torch.Tensor]]


class _GradCapture(torch.autograd.Function):
    """Identity; backward puts the gradient it passes on into ``cell`` (the gradient of
    a term alone, when only that term reads this view)."""

    @staticmethod
    def forward(ctx, x, cell):
        ctx.cell = cell
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.cell.append(grad)
        return grad, None


def tap_gradient(x: torch.Tensor, sink: list) -> torch.Tensor:
    """A view of ``x`` for a term to read (and nothing else): after the backward,
    ``sink`` gets ``(||g_term||^2, ||g_total - g_term||^2)`` at ``x``, ``g_term`` the
    gradient that came through the view, ``g_total`` all of ``x``'s gradient. Costs an
    identity node, a tensor hook and two norms per backward."""
    cell: list = []

    def record(total, cell=cell, sink=sink):
        # total = rest of the objective + the term; the term's part came through cell
        g_term = cell.pop() if cell else torch.zeros_like(total)
        dtype = torch.float64 if total.dtype == torch.float64 else torch.float32
        sink.append((torch.linalg.vector_norm(g_term, dtype=dtype).square().detach(),
                     torch.linalg.vector_norm(total - g_term, dtype=dtype).square().detach()))

    x.register_hook(record)
    return _GradCapture.apply(x, cell)


class GradShareStats:
    r"""The gradient share of a regularizer: what its backward reports, read after it.

    After each backward, :attr:`last_grad_share` is
    :math:`\sqrt{\sum_t \|g_{r,t}\|_F^2} / \sqrt{\sum_t \|g_{y,t}\|_F^2}` over the
    tensors ``t`` this regularizer touched in the step: ``g_r`` the gradient the
    regularizer adds at ``t``, ``g_y`` the gradient reaching ``t`` from the rest of the
    objective (the task loss, other regularizers, and this regularizer's terms at later
    layers back-propagated to ``t``). Because ``g_y`` at a block includes the
    regularizer's gradients of the blocks after it, a strong regularizer on many blocks
    raises ``g_y`` too, and the summed share then understates how much of the gradient it
    makes up; :attr:`last_grad_shares` gives the share per tensor, the first (most
    downstream) being free of that effect.

    VCReg's fast mode gets both norms in its backward cheaply (a ``d x d`` product, or
    one pass over the rows when they are few, plus the norm of ``g_y``); VCReg's explicit
    mode and ρSIM/SIM (at the block outputs, where their prediction branch reads) use
    :func:`tap_gradient`. With ``sync`` the norms are those of this rank's rows.

    The host starts ``_grad_norms`` and ``_grad_norms_last`` as empty lists; its
    backward appends ``(||g_r||^2, ||g_y||^2)`` per tensor to the list
    :meth:`_grad_norm_sink` hands it.
    """

    _grad_norms: Norms
    _grad_norms_last: Norms
    #: Whether this regularizer measures its gradient share (ρSIM/SIM: with taps only).
    measures_grad_share = True

    def _grad_norm_sink(self) -> list:
        """The list this step's backward fills; a forward after a backward starts a step."""
        if self._grad_norms:
            self._grad_norms_last, self._grad_norms = self._grad_norms, []
        return self._grad_norms

    @property
    def last_grad_norms(self) -> Optional[Tuple[float, float]]:
        r"""``(||g_r||, ||g_y||)`` of the last backward (Frobenius, summed in squares
        over the regularized tensors), or None before any backward."""
        pairs = self._grad_norms or self._grad_norms_last
        if not pairs:
            return None
        reg_sq = float(torch.stack([v for v, _ in pairs]).sum())
        task_sq = float(torch.stack([t for _, t in pairs]).sum())
        return math.sqrt(reg_sq), math.sqrt(task_sq)

    @property
    def last_grad_share(self) -> Optional[float]:
        """``||g_r|| / ||g_y||`` of the last backward (class docstring); None before any
        backward, ``inf`` if no gradient came from downstream."""
        norms = self.last_grad_norms
        if norms is None:
            return None
        reg, task = norms
        return reg / task if task > 0 else math.inf

    @property
    def last_grad_shares(self) -> List[float]:
        """Per tensor ``||g_r|| / ||g_y||`` of the last backward, in backward order: the
        first is the most downstream regularized tensor, whose ``g_y`` holds no gradient
        of this regularizer's other tensors (class docstring)."""
        return [float(v.sqrt() / t.sqrt()) if t > 0 else math.inf
                for v, t in (self._grad_norms or self._grad_norms_last)]

    @property
    def last_grad_count(self) -> int:
        """How many regularized tensors the last backward reported."""
        return len(self._grad_norms or self._grad_norms_last)
