"""Regularizers as torch modules: taps on named layers, loss terms, gradients.

Imports ``sslreg.losses`` and torch only; the OpenMMLab faces live in ``sslreg.models``
and ``sslreg.hooks``.

* :mod:`.taps` -- :func:`resolve_layers` (module paths and globs) and
  :class:`LayerRecorder`, sslreg's one way of recording a layer's ``(input, output)``
  (used by the regularizers, MCR's view tap, ``LayerFeatureHook`` and SER's
  equivariance score);
* :mod:`.base` -- the :class:`Regularizer` contract and :func:`collecting`,
  :func:`probing`, :func:`pop_terms`, :func:`merge_terms`;
* :mod:`.sim` -- :class:`RhoSIM`, :class:`SIM`; :mod:`.vcreg` -- :class:`VCReg`.
"""
from .base import (Regularizer, channel_dim_for, collecting, find_regularizers, first_tensor,
                   merge_terms, pop_terms, probing)
from .sim import SIM, RhoSIM
from .taps import LayerRecorder, Record, block_input, resolve_layers
from .vcreg import VCReg

__all__ = [
    'Regularizer', 'collecting', 'probing', 'pop_terms', 'merge_terms', 'find_regularizers',
    'first_tensor', 'channel_dim_for', 'resolve_layers', 'LayerRecorder', 'Record',
    'block_input', 'VCReg', 'RhoSIM', 'SIM'
]
