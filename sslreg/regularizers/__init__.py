"""Regularizers as torch modules: taps on named layers, loss terms, gradients.

Imports ``sslreg.losses`` and torch only; the OpenMMLab faces live in ``sslreg.models``
and ``sslreg.hooks``.
"""
from .base import (Regularizer, channel_dim_for, collecting, find_regularizers, first_tensor,
                   merge_terms, pop_terms, probing)
from .sim import SIM, RhoSIM
from .taps import resolve_layers
from .vcreg import VCReg

__all__ = [
    'Regularizer', 'collecting', 'probing', 'pop_terms', 'merge_terms', 'find_regularizers', 'first_tensor',
    'channel_dim_for', 'resolve_layers', 'VCReg', 'RhoSIM', 'SIM'
]
