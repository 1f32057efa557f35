"""Necks that regularize what flows through the neck position.

A neck cannot return losses: it records them, and ``RegularizedModel`` or
``RegularizerHook`` (either one) puts them in the loss dict as ``loss_<name>``.
"""
from typing import Optional, Sequence, Union

import torch
from mmengine.registry import MODELS
from torch import nn

from ..regularizers import RhoSIM, VCReg
from ..regularizers.vcreg import map_tensors


def _build(neck: Optional[dict]) -> Optional[nn.Module]:
    return MODELS.build(neck) if neck is not None else None


@MODELS.register_module()
class VCRegNeck(VCReg):
    """Identity neck applying VCReg to each tensor passing through (tuples of
    multi-level features too), after an optional inner ``neck``. The VCReg paper's
    "vanilla" form on a classifier's input is
    ``neck=dict(type='VCRegNeck', neck=dict(type='GlobalAveragePooling'))``.

    Fast mode (default) needs no collector for its gradient; its logged value and the
    explicit form's loss need ``RegularizedModel`` or ``RegularizerHook``.

    All of :class:`~sslreg.regularizers.VCReg`'s options pass through ``**vcreg``
    (``alpha``, ``beta``, ``cov_scale``, ``demean``, ...). ``demean=True`` (the paper's
    mean removal layer before VCReg) keeps a running mean per tensor for evaluation, as
    a buffer of this neck (``running_mean``; ``running_mean__out<k>`` for the k-th
    tensor of a tuple), so it is part of the architecture and of a stripped
    checkpoint; its widths are declared like FPN's.

    Args:
        neck: optional inner neck applied first.
        name: loss key suffix (``loss_<name>``, ``<name>_value``).
        in_channels: channels of the tensor(s) leaving the inner neck; required with
            ``demean=True`` (an int, or one int per tensor of a tuple output).
    """

    def __init__(self, neck: Optional[dict] = None, name: str = 'vcreg_neck',
                 in_channels: Optional[Union[int, Sequence[int]]] = None, **vcreg):
        super().__init__(layers=None, **vcreg)
        self.name = name
        self.neck = _build(neck)
        if self.demean:
            if in_channels is None:
                raise ValueError("VCRegNeck(demean=True) needs in_channels (the channels of "
                                 "the tensor(s) it receives, e.g. 2048 after ResNet-50's "
                                 "GlobalAveragePooling) to create its running mean(s)")
            widths = [in_channels] if isinstance(in_channels, int) else list(in_channels)
            for k, width in enumerate(widths):
                self._add_running_mean('', k, width)
        self.in_channels = in_channels

    def forward(self, inputs):
        x = self.neck(inputs) if self.neck is not None else inputs
        if self.demean:
            return self.process('', x, self.training, True)
        return map_tensors(x, self.regularize)


@MODELS.register_module()
class SIMNeck(RhoSIM):
    """ρSIM at stage granularity: reconstructs level l-1 of the backbone's multi-level
    output from level l (input resampled onto the coarser grid), then applies an
    optional inner ``neck`` (e.g. FPN) to the untouched features.

    Args:
        in_channels: channels of each level, as for FPN.
        neck: optional neck applied after.
        name: loss key suffix (``loss_<name>``).
        **rho_sim: RhoSIM's options (rho, dim, hidden, kind, loss_weight, ...).
    """

    def __init__(self, in_channels: Sequence[int], neck: Optional[dict] = None,
                 name: str = 'sim_neck', **rho_sim):
        super().__init__(layers=None, **rho_sim)
        if len(in_channels) < 2:
            raise ValueError(f'SIMNeck needs at least two levels, got in_channels={in_channels}')
        self.name = name
        self.in_channels = list(in_channels)
        for level in range(1, len(in_channels)):
            self.add_block(f'level{level}', in_channels[level - 1], in_channels[level])
        self.neck = _build(neck)

    @property
    def num_blocks(self) -> int:
        return len(self.in_channels) - 1

    def forward(self, inputs):
        levels = [inputs] if torch.is_tensor(inputs) else list(inputs)
        if len(levels) != len(self.in_channels):
            raise ValueError(f'SIMNeck declared in_channels={self.in_channels} but got '
                             f'{len(levels)} feature levels; set the backbone out_indices '
                             'to give every level')
        if self.training and torch.is_grad_enabled():
            if not self.active:
                raise RuntimeError(
                    "SIMNeck ran in training but nothing collects its loss: wrap the model "
                    "in RegularizedModel or add custom_hooks=[dict(type='RegularizerHook')].")
            for level in range(1, len(levels)):
                self.add_term('loss', self.block_loss(f'level{level}', levels[level - 1],
                                                      levels[level]))
        return self.neck(inputs) if self.neck is not None else inputs
