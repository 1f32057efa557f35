"""DeCov as a regularizer on tapped layers (math: :mod:`sslreg.losses.decov`)."""
from typing import Optional

import torch

from ..losses.decov import decov_loss
from .base import Regularizer, channel_dim_for
from .grad_share import GradShareStats, tap_gradient
from .vcreg import map_tensors


class DeCov(GradShareStats, Regularizer):
    r"""DeCov (Cogswell et al., ICLR 2016) on the outputs of the tapped layers: adds
    ``loss_<name>`` = ``loss_weight`` :math:`\cdot \frac{1}{2}(\|C\|_F^2 -
    \|\mathrm{diag}(C)\|_2^2)` of each output's batch covariance (summed over layers and
    calls), the VCReg paper's baseline. Parameter-free and stateless, so it works through
    ``RegularizerHook`` as through ``RegularizedModel``::

        custom_hooks = [dict(type='RegularizerHook', regularizers=dict(
            decov=dict(type='DeCov', layers='neck', loss_weight=0.1)))]

    The paper penalizes one layer, the penultimate (a ResNet's pooled feature: the
    ``neck`` output of an mmpretrain ``ImageClassifier``, a tuple whose tensors each get
    the loss). The loss is a sum over the :math:`d(d-1)` covariances, so ``loss_weight``
    depends on the width (see the configs' headers).

    Args:
        layers: module paths/globs (their outputs).
        loss_weight: :math:`\lambda`.
        channel_dim: the feature axis; None: 1 for ``(N, C)`` / ``(N, C, H, W)``, -1 for
            ``(N, L, C)`` tokens. Every other axis is a sample axis.
        unbiased: :math:`1/(N-1)` covariance instead of the paper's :math:`1/N`.
        input_index: see :class:`Regularizer`.
    """

    def __init__(self, layers=None, loss_weight: float = 1.0,
                 channel_dim: Optional[int] = None, unbiased: bool = False,
                 input_index: int = 0):
        super().__init__(layers, loss_weight, input_index)
        self.channel_dim, self.unbiased = channel_dim, bool(unbiased)
        self._grad_norms, self._grad_norms_last = [], []

    def penalize(self, x: torch.Tensor) -> torch.Tensor:
        """Record the loss of one feature tensor (in training, with grad); returns ``x``."""
        if not (self.training and torch.is_grad_enabled() and x.requires_grad):
            return x
        if not self.active:
            raise RuntimeError(
                'DeCov ran in training but nothing collects its loss: wrap the model in '
                "RegularizedModel or add custom_hooks=[dict(type='RegularizerHook')].")
        channel_dim = channel_dim_for(x.dim()) if self.channel_dim is None else self.channel_dim
        # the loss reads a view only it reads: its gradient share (tap_gradient)
        loss = decov_loss(tap_gradient(x, self._grad_norm_sink()), channel_dim, self.unbiased)
        self.add_term('loss', self.weight * loss)
        return x

    def on_block(self, name, block_input, output):
        map_tensors(output, self.penalize)
        return None  # the output goes on unchanged
