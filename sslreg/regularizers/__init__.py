"""Regularizers as torch modules: taps on named layers, loss terms, gradients.

Imports ``sslreg.losses`` and torch only; the OpenMMLab faces live in ``sslreg.models``
and ``sslreg.hooks``.

* :mod:`.taps` -- :func:`resolve_layers` (module paths and globs) and
  :class:`LayerRecorder`, sslreg's one way of recording a layer's ``(input, output)``
  (used by the regularizers, MCR's view tap, ``LayerFeatureHook`` and SER's
  equivariance score);
* :mod:`.base` -- the :class:`Regularizer` contract and :func:`collecting`,
  :func:`probing`, :func:`pop_terms`, :func:`merge_terms`;
* :mod:`.sim` -- :class:`RhoSIM`, :class:`SIM`; :mod:`.vcreg` -- :class:`VCReg`;
  :mod:`.decov` -- :class:`DeCov` (the VCReg paper's baseline);
* :mod:`.grad_share` -- :class:`GradShareStats` (how hard a regularizer pulls, after a
  backward); :mod:`.report` -- :func:`report_lines` (its layers and gradient share, one
  line per regularizer, as the OpenMMLab faces log them).
"""
from .base import (Regularizer, channel_dim_for, collecting, find_regularizers, first_tensor,
                   merge_terms, pop_terms, probing)
from .decov import DeCov
from .grad_share import GradShareStats
from .report import report_lines
from .sim import SIM, RhoSIM
from .taps import LayerRecorder, Record, block_input, resolve_layers
from .vcreg import VCReg

__all__ = [
    'Regularizer', 'collecting', 'probing', 'pop_terms', 'merge_terms', 'find_regularizers',
    'first_tensor', 'channel_dim_for', 'resolve_layers', 'LayerRecorder', 'Record',
    'block_input', 'VCReg', 'DeCov', 'RhoSIM', 'SIM', 'GradShareStats', 'report_lines'
]
