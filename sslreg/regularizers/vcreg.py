"""VCReg as a regularizer on tapped layers (math: :mod:`sslreg.losses.vcreg`)."""
from typing import Optional

import torch

from ..losses.vcreg import vcreg_fast, vcreg_loss
from .base import Regularizer, channel_dim_for

MODES = ('fast', 'explicit')


def map_tensors(output, fn):
    """Apply ``fn`` to the output tensor, or to each >=2-D tensor of a tuple/list
    (multi-level features); other items pass through."""
    if torch.is_tensor(output):
        return fn(output)
    if isinstance(output, (tuple, list)):
        return type(output)(fn(t) if torch.is_tensor(t) and t.dim() >= 2 else t for t in output)
    raise TypeError(f'VCReg: cannot regularize a {type(output).__name__} output')


class VCReg(Regularizer):
    """Variance-covariance regularization of the outputs of the tapped layers.

    ``mode='fast'`` (default) leaves the forward untouched and adds the gradient of
    the loss in backward (:func:`vcreg_fast`); its value is logged as ``<name>_value``
    and not summed into the loss. ``mode='explicit'`` adds ``loss_<name>``. Per-block
    losses are summed over blocks and calls; ``loss_weight`` multiplies alpha and beta.

    Args:
        layers: module paths/globs to regularize (their outputs).
        alpha, beta, eps, delta: as in :func:`vcreg_loss` (delta: smooth-L1 on the
            covariance, None for squares).
        mode: 'fast' or 'explicit'.
        channel_dim: None picks 1 for 4-D/2-D maps and -1 for (N, L, C) tokens
            (:func:`channel_dim_for`).
        sync: statistics over all DDP ranks.
        sample_ratio: fast mode only: estimate the statistics from this fraction of
            the positions (see :func:`vcreg_fast`); 1 = exact (default).
    """

    def __init__(self, layers=None, alpha: float = 1.0, beta: float = 1.0, eps: float = 1e-4,
                 delta: Optional[float] = None, mode: str = 'fast',
                 channel_dim: Optional[int] = None, sync: bool = False,
                 sample_ratio: float = 1.0, loss_weight: float = 1.0, input_index: int = 0):
        super().__init__(layers, loss_weight, input_index)
        if mode not in MODES:
            raise ValueError(f"VCReg mode must be one of {MODES}, got {mode!r}")
        if not 0 < sample_ratio <= 1 or (mode == 'explicit' and sample_ratio != 1):
            raise ValueError(f"VCReg sample_ratio must be in (0, 1] and is for mode='fast' "
                             f"only; got sample_ratio={sample_ratio}, mode={mode!r}")
        self.sample_ratio = sample_ratio
        self.alpha, self.beta, self.eps, self.delta = alpha, beta, eps, delta
        self.mode, self.channel_dim, self.sync = mode, channel_dim, sync

    def regularize(self, x: torch.Tensor) -> torch.Tensor:
        """Apply VCReg to one feature tensor; returns x itself (explicit) or a tensor
        equal to x whose backward adds the VCReg gradient (fast).

        Terms are recorded only while a collector has made this module active; the
        fast form's gradient needs no collector, the explicit loss does."""
        if not (self.training and torch.is_grad_enabled() and x.requires_grad):
            return x
        channel_dim = channel_dim_for(x.dim()) if self.channel_dim is None else self.channel_dim
        alpha, beta = self.alpha * self.weight, self.beta * self.weight
        if self.mode == 'fast':
            stats = [] if self.active else None
            y = vcreg_fast(x, alpha, beta, self.eps, self.delta, channel_dim, self.sync, stats,
                           self.sample_ratio)
            if stats:
                self.add_term('value', stats[0])
            return y
        if not self.active:
            raise RuntimeError(
                f"{type(self).__name__}(mode='explicit') ran in training but nothing collects "
                "its loss: wrap the model in RegularizedModel or add "
                "custom_hooks=[dict(type='RegularizerHook')].")
        self.add_term('loss', vcreg_loss(x, alpha, beta, self.eps, self.delta, channel_dim,
                                         self.sync))
        return x

    def on_block(self, name, block_input, output):
        return map_tensors(output, self.regularize)
