"""Where a model's architecture is, whatever wraps it: one helper for hooks and metrics.

Layer names in sslreg's options are relative to the *architecture*: the model a config
names. Two things may stand around it at run time: a model wrapper of MMEngine's
(DDP, ``MMDistributedDataParallel``, sslreg's ``CPUDistributedDataParallel`` and
``MCRDataParallel``: whatever :func:`mmengine.model.is_model_wrapper` recognises, whose
``.module`` is the model), and sslreg's ``RegularizedModel`` (whose ``.architecture``
is). :func:`architecture_of` removes both.

A ``RegularizedModel`` is recognised by what it has -- an ``architecture`` module and a
``regularizers`` ``ModuleDict`` -- not by its class, so ``sslreg.hooks`` and
``sslreg.evaluation`` read it without importing ``sslreg.models``
(tests/test_import_rules.py enforces that).
"""
from typing import Dict

from mmengine.model import is_model_wrapper
from torch import nn

__all__ = ['unwrap_model', 'is_regularized_model', 'architecture_of', 'regularizers_of']


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside an MMEngine model wrapper (DDP and the like), else ``model``."""
    return model.module if is_model_wrapper(model) else model


def is_regularized_model(model: nn.Module) -> bool:
    """Whether ``model`` (unwrapped) is a ``RegularizedModel``: it has an
    ``architecture`` module and a ``regularizers`` ``ModuleDict``."""
    return (isinstance(getattr(model, 'architecture', None), nn.Module)
            and isinstance(getattr(model, 'regularizers', None), nn.ModuleDict))


def architecture_of(model: nn.Module) -> nn.Module:
    """The architecture of ``model``: unwrapped (:func:`unwrap_model`), then a
    ``RegularizedModel``'s ``.architecture``; a plain model is its own."""
    model = unwrap_model(model)
    return model.architecture if is_regularized_model(model) else model


def regularizers_of(model: nn.Module) -> Dict[str, nn.Module]:
    """The regularizers a ``RegularizedModel`` holds (``{name: regularizer}``, in its
    order), after :func:`unwrap_model`; ``{}`` for any other model."""
    model = unwrap_model(model)
    return dict(model.regularizers.items()) if is_regularized_model(model) else {}
