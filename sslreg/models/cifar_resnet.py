"""``CifarResNet``: the CIFAR ResNets of He et al. 2016 (ResNet-20/32/44/56/110).

"Deep Residual Learning for Image Recognition", Sec. 4.2: a 3x3 convolution with 16
filters, then 3 stages of n BasicBlocks (two 3x3 convolutions each) on maps of 32, 16, 8
pixels with 16, 32, 64 filters (strides 1, 2, 2; each stage's first block subsamples),
global average pooling and a linear classifier: depth = 6n + 2 weighted layers. ResNet-32
(n = 5) has 0.46 M parameters with its 10-way classifier (the paper's Table 6).

Shortcuts: ``shortcut='A'`` (default, the paper's choice on CIFAR: "identity shortcuts in
all cases (i.e., option A)") -- where a block changes the shape, the input is subsampled
by the stride (``x[:, :, ::2, ::2]``) and the new channels are zeros, parameter-free;
``shortcut='B'`` -- a strided 1x1 convolution + BN there (mmpretrain's ``ResNet``).
mmpretrain's ``ResNet_CIFAR`` is the ImageNet family (depth 18..152, 4 stages, 64..512
channels) with a 3x3 stem, not this network.

As mmpretrain's backbones it returns a tuple of the stages in ``out_indices`` (default
the last: (N, 64, H/4, W/4)); the stages are ``layer1..layer3`` and the blocks
``layer<i>.<j>``, so sslreg's taps (``'backbone.layer*.*'``) find them as on ResNet::

    model = dict(type='ImageClassifier',
                 backbone=dict(type='CifarResNet', depth=32),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=10, in_channels=64,
                           loss=dict(type='CrossEntropyLoss')))
"""
from typing import Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['CifarResNet', 'CifarBasicBlock']

SHORTCUTS = ('A', 'B')


class CifarBasicBlock(BaseModule):
    """Two 3x3 conv-BN, ReLU between and after the sum with the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 shortcut: str = 'A', conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'), init_cfg=None):
        super().__init__(init_cfg)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv1 = build_conv_layer(conv_cfg, in_channels, out_channels, 3, stride=stride,
                                      padding=1, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, out_channels)[1]
        self.conv2 = build_conv_layer(conv_cfg, out_channels, out_channels, 3, padding=1,
                                      bias=False)
        self.bn2 = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = shortcut
        self.downsample = None
        reshapes = stride != 1 or in_channels != out_channels
        if reshapes and shortcut == 'B':
            self.downsample = nn.Sequential(
                build_conv_layer(conv_cfg, in_channels, out_channels, 1, stride=stride,
                                 bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])
        elif reshapes and out_channels < in_channels:
            raise ValueError('option A pads channels with zeros: out_channels must be >= '
                             f'in_channels, got {in_channels} -> {out_channels}')

    def identity(self, x):
        if self.downsample is not None:
            return self.downsample(x)
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.out_channels != self.in_channels:  # option A: zero channels appended
            x = F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))
        return x

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.identity(x))


@MODELS.register_module()
class CifarResNet(BaseModule):
    """He et al.'s CIFAR ResNet of ``depth`` = 6n + 2 (module docstring).

    Args:
        depth: 6n + 2 (20, 32, 44, 56, 110, ...); n BasicBlocks per stage.
        in_channels: input channels (3).
        stem_channels: filters of the first 3x3 convolution (16).
        stage_channels: filters of the three stages (16, 32, 64).
        strides: strides of the stages' first blocks (1, 2, 2).
        out_indices: stages returned, 0-based (``(2,)``: the last).
        shortcut: ``'A'`` (zero-padding identity, the paper) or ``'B'`` (1x1 projection).
        conv_cfg, norm_cfg: mmcv layer configs (BN by default).
        norm_eval: keep BN layers in eval mode in training (frozen statistics).
        zero_init_residual: zero each block's last BN weight (off in the paper).
    """

    def __init__(self, depth: int = 32, in_channels: int = 3, stem_channels: int = 16,
                 stage_channels: Sequence[int] = (16, 32, 64), strides: Sequence[int] = (1, 2, 2),
                 out_indices: Sequence[int] = (2,), shortcut: str = 'A',
                 conv_cfg: Optional[dict] = None, norm_cfg: dict = dict(type='BN'),
                 norm_eval: bool = False, zero_init_residual: bool = False,
                 init_cfg=(dict(type='Kaiming', layer=['Conv2d']),
                           dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']))):
        super().__init__(list(init_cfg) if init_cfg is not None else None)
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f'CifarResNet depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, '
                             f'110, ...), got {depth!r}')
        if shortcut not in SHORTCUTS:
            raise ValueError(f'shortcut must be one of {SHORTCUTS}, got {shortcut!r}')
        if len(stage_channels) != 3 or len(strides) != 3:
            raise ValueError('CifarResNet has 3 stages: give 3 stage_channels and 3 strides')
        out_indices = tuple(i % 3 for i in out_indices)
        if not out_indices:
            raise ValueError('out_indices must name at least one stage (0, 1, 2)')
        self.depth, self.num_blocks = depth, (depth - 2) // 6
        self.out_indices, self.shortcut = out_indices, shortcut
        self.norm_eval, self.zero_init_residual = norm_eval, zero_init_residual
        self.conv1 = build_conv_layer(conv_cfg, in_channels, stem_channels, 3, padding=1,
                                      bias=False)
        self.bn1 = build_norm_layer(norm_cfg, stem_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.res_layers = []
        channels = stem_channels
        for i, (width, stride) in enumerate(zip(stage_channels, strides)):
            blocks = [CifarBasicBlock(channels if j == 0 else width, width,
                                      stride if j == 0 else 1, shortcut, conv_cfg, norm_cfg)
                      for j in range(self.num_blocks)]
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            self.res_layers.append(f'layer{i + 1}')
            channels = width
        self.out_channels = tuple(stage_channels[i] for i in out_indices)

    def init_weights(self):
        super().init_weights()
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, CifarBasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
