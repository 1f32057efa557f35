"""OpenMMLab faces of sslreg: registered models, necks and wrappers."""
from mmengine.registry import MODELS

from ..regularizers import SIM, RhoSIM, VCReg
from .ddp import CPUDistributedDataParallel
from .necks import SIMNeck, VCRegNeck
from .regularized_model import RegularizedModel

# The torch-only regularizers, by name, for `regularizers=dict(x=dict(type='RhoSIM'))`.
for _cls in (VCReg, RhoSIM, SIM):
    MODELS.register_module(module=_cls)

__all__ = ['CPUDistributedDataParallel', 'RegularizedModel', 'VCRegNeck', 'SIMNeck',
           'VCReg', 'RhoSIM', 'SIM']
