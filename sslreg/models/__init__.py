"""OpenMMLab faces of sslreg: registered models, necks and wrappers."""
from mmengine.registry import MODELS

from ..regularizers import SIM, RhoSIM, VCReg
from .comp_mod import CompMod
from .ddp import CPUDistributedDataParallel, MCRDataParallel
from .mcr import MCR
from .mcr_optim import MCROptimWrapperConstructor
from .late_cls_vit import LateClsViT
from .necks import SIMNeck, VCRegNeck
from .pyramid_neck import SimplePyramidNeck
from .regularized_model import RegularizedModel
from .sidae import SidAE
from .ser import SERBarlowTwins, SERMoCoV3
from .ser_dino import SERDINO
from .transfer_vit import TransferViT

# The torch-only regularizers, by name, for `regularizers=dict(x=dict(type='RhoSIM'))`.
for _cls in (VCReg, RhoSIM, SIM):
    MODELS.register_module(module=_cls)

__all__ = ['CPUDistributedDataParallel', 'RegularizedModel', 'VCRegNeck', 'SIMNeck',
           'SimplePyramidNeck', 'VCReg', 'RhoSIM', 'SIM']
