"""OpenMMLab faces of sslreg: registered models, backbones, necks, SSL algorithms and
model wrappers (importing this package registers every one of them).

* wrapper: :class:`RegularizedModel` (``regularized_model.py``) -- any model plus
  regularizers on its named layers; the regularizers themselves (:class:`VCReg`,
  :class:`RhoSIM`, :class:`SIM`, :class:`DeCov`, from ``sslreg.regularizers``) are
  registered here;
* necks: :class:`VCRegNeck`, :class:`SIMNeck` (``necks.py``), :class:`SimplePyramidNeck`
  (``pyramid_neck.py``);
* backbones: :class:`LateClsViT` (SER's ViT, ``late_cls_vit.py``), :class:`TransferViT`
  (an SER or plain ViT checkpoint for transfer, ``transfer_vit.py``),
  :func:`FrozenBackbone` (``frozen_backbone.py``), :class:`CifarResNet` (He et al.'s
  CIFAR ResNet-20/32/..., ``cifar_resnet.py``);
* SSL algorithms: :class:`SERMoCoV3`, :class:`SERBarlowTwins` (``ser.py``),
  :class:`SERDINO` (``ser_dino.py``), :class:`MCR` (``mcr.py``; CompMod and its view tap
  in ``comp_mod.py``, optimizers and Runner glue in ``mcr_optim.py``, the gradient-share
  diagnostic in ``mcr_diagnostics.py``), :class:`SidAE` (``sidae.py``), :class:`VICReg`
  (``vicreg.py``);
* model wrappers: :class:`CPUDistributedDataParallel`, :class:`MCRDataParallel`
  (``ddp.py``); optimizer-wrapper constructor: :class:`MCROptimWrapperConstructor`.
"""
from mmengine.registry import MODELS

from ..regularizers import SIM, DeCov, RhoSIM, VCReg
from .cifar_resnet import CifarResNet
from .comp_mod import CompMod
from .ddp import CPUDistributedDataParallel, MCRDataParallel
from .frozen_backbone import FrozenBackbone, freeze
from .late_cls_vit import LateClsViT
from .mcr import MCR
from .mcr_optim import MCROptimWrapperConstructor
from .necks import SIMNeck, VCRegNeck
from .pyramid_neck import SimplePyramidNeck
from .regularized_model import RegularizedModel
from .ser import SERBarlowTwins, SERMoCoV3
from .ser_dino import SERDINO
from .sidae import SidAE
from .transfer_vit import TransferViT
from .vicreg import VICReg

# The torch-only regularizers, by name, for `regularizers=dict(x=dict(type='RhoSIM'))`.
for _cls in (VCReg, RhoSIM, SIM, DeCov):
    MODELS.register_module(module=_cls)

__all__ = [
    'RegularizedModel', 'VCReg', 'RhoSIM', 'SIM', 'DeCov', 'VICReg', 'VCRegNeck', 'SIMNeck', 'SimplePyramidNeck',
    'LateClsViT', 'TransferViT', 'FrozenBackbone', 'freeze', 'SERMoCoV3', 'SERBarlowTwins',
    'SERDINO', 'MCR', 'CompMod', 'MCROptimWrapperConstructor', 'SidAE', 'CifarResNet',
    'CPUDistributedDataParallel', 'MCRDataParallel'
]
