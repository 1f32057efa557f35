"""``SimplePyramidNeck``: a plain ViT's single stride-16 map as a feature pyramid.

The "simple feature pyramid" of ViTDet (Li, Mao, Girshick, He: *Exploring Plain Vision
Transformer Backbones for Object Detection*, ECCV 2022, Sec. 3 and Fig. 2c): only the
last feature map of a plain, non-hierarchical backbone is used; parallel
deconvolutions / pooling turn it into strides {4, 8, 16, 32}, each followed by a 1x1
and a 3x3 convolution with a norm (LayerNorm over channels in the paper), and no
top-down or lateral connections (the paper finds they do not help). Detection heads
needing more levels get them on top by max pooling (ViTDet's ``LastLevelMaxPool``).

mmdet's own ``SimpleFPN`` lives in mmdet's ``projects/ViTDet`` folder, which is not
part of the mmdet wheel, hence this neck. It drops into any mmdet detector where an
FPN goes: ``out_channels`` and ``num_outs`` mean what they mean for FPN.

Example (Mask R-CNN, strides 4..64)::

    neck=dict(type='SimplePyramidNeck', in_channels=384, out_channels=256,
              scale_factors=(4.0, 2.0, 1.0, 0.5), num_outs=5)

RetinaNet (strides 8..128)::

    neck=dict(type='SimplePyramidNeck', in_channels=384, out_channels=256,
              scale_factors=(2.0, 1.0, 0.5), num_outs=5)
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

SCALE_FACTORS = (4.0, 2.0, 1.0, 0.5)


class _ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) map (ViTDet's ``LayerNorm``)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2).contiguous()


def _norm(norm_cfg: Optional[dict], channels: int) -> nn.Module:
    """``dict(type='LN2d')`` (channel LayerNorm, the paper's), or any mmcv norm
    (``GN``, ``BN``, ``SyncBN``); None for none."""
    if norm_cfg is None:
        return nn.Identity()
    cfg = dict(norm_cfg)
    if cfg['type'] in ('LN2d', 'LN'):
        return _ChannelLayerNorm(channels, eps=cfg.get('eps', 1e-6))
    return build_norm_layer(cfg, channels)[1]


def _conv_norm(in_ch: int, out_ch: int, kernel: int, norm_cfg: Optional[dict]) -> nn.Sequential:
    """Conv (no bias when normed) + norm, no activation (as ViTDet's ``Conv2d(norm=...)``)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=norm_cfg is None)
    return nn.Sequential(conv, _norm(norm_cfg, out_ch))


@MODELS.register_module()
class SimplePyramidNeck(BaseModule):
    """ViTDet's simple feature pyramid from one stride-s map (s = 16 for ViT-*/16).

    Per scale factor: 4 -> two 2x2 stride-2 deconvolutions (norm + GELU between them),
    2 -> one deconvolution, 1 -> identity, 0.5 -> 2x2 max pooling; then 1x1 conv +
    norm and 3x3 conv + norm to ``out_channels``. Levels beyond the scale factors
    (``num_outs > len(scale_factors)``) are max pooling (kernel 1, stride 2) of the
    previous output, as ViTDet's ``LastLevelMaxPool``.

    Args:
        in_channels: channels of the backbone map (384 for ViT-S). An int, or a
            one-element list as FPN configs write it.
        out_channels: channels of every output level (256, as FPN).
        scale_factors: resampling factors relative to the input map, finest first.
        num_outs: number of output levels (>= len(scale_factors)).
        norm_cfg: ``dict(type='LN2d')`` (the paper's LayerNorm), ``dict(type='GN',
            num_groups=32)``, BN/SyncBN, or None.
        in_index: which element of the backbone's output tuple to use (the last).
        init_cfg: defaults to Xavier-uniform convolutions, as mmdet's FPN.
    """

    def __init__(self, in_channels: Union[int, Sequence[int]], out_channels: int = 256,
                 scale_factors: Sequence[float] = SCALE_FACTORS, num_outs: Optional[int] = None,
                 norm_cfg: Optional[dict] = dict(type='LN2d', eps=1e-6), in_index: int = -1,
                 init_cfg: Optional[dict] = dict(
                     type='Xavier', layer=['Conv2d', 'ConvTranspose2d'],
                     distribution='uniform')):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, int):
            in_channels = list(in_channels)
            if len(in_channels) != 1:
                raise ValueError('SimplePyramidNeck builds the pyramid from ONE map; got '
                                 f'in_channels={in_channels}. Give the width of that map.')
            in_channels = in_channels[0]
        scale_factors = tuple(float(s) for s in scale_factors)
        unknown = [s for s in scale_factors if s not in SCALE_FACTORS]
        if unknown or not scale_factors:
            raise ValueError(f'scale_factors must be taken from {SCALE_FACTORS}, got '
                             f'{scale_factors}')
        num_outs = len(scale_factors) if num_outs is None else int(num_outs)
        if num_outs < len(scale_factors):
            raise ValueError(f'num_outs={num_outs} < {len(scale_factors)} scale factors')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale_factors, self.num_outs, self.in_index = scale_factors, num_outs, in_index

        self.stages = nn.ModuleList()
        for scale in scale_factors:
            resample, width = self._resample(scale, in_channels, norm_cfg)
            self.stages.append(nn.Sequential(
                resample,
                _conv_norm(width, out_channels, 1, norm_cfg),
                _conv_norm(out_channels, out_channels, 3, norm_cfg)))

    @staticmethod
    def _resample(scale: float, dim: int, norm_cfg) -> Tuple[nn.Module, int]:
        if scale == 4.0:
            return nn.Sequential(
                nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
                _norm(norm_cfg, dim // 2), nn.GELU(),
                nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2)), dim // 4
        if scale == 2.0:
            return nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2), dim // 2
        if scale == 1.0:
            return nn.Identity(), dim
        return nn.MaxPool2d(kernel_size=2, stride=2), dim

    def forward(self, inputs) -> Tuple[torch.Tensor, ...]:
        x = inputs if torch.is_tensor(inputs) else inputs[self.in_index]
        if x.dim() != 4:
            raise ValueError(f'SimplePyramidNeck needs an (N, C, H, W) map, got shape '
                             f'{tuple(x.shape)}; for mmpretrain ViTs set '
                             "out_type='featmap'")
        outs = [stage(x) for stage in self.stages]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
