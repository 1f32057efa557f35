r"""SidAE: SimSiam plus a denoising decoder (the math is in :mod:`sslreg.losses.sidae`).

"Self-Supervised Siamese Autoencoders" (no code released). mmpretrain's SimSiam --
its encoder (backbone + 3-layer ``NonLinearNeck`` projector), 2-layer predictor
(``LatentPredictHead``, negative cosine, stop-gradient) -- plus a decoder that
reconstructs the clean 32x32 image from the projection ``z``: one fully connected
layer, then five 3x3 transposed convolutions with stride 2, padding 1 and output
padding 1 (each doubles the side: 1 -> 2 -> 4 -> 8 -> 16 -> 32).

Loss: :math:`w \mathcal{L}_{dae} + (1-w) \mathcal{L}_{si}`; ``w=0`` is SimSiam
exactly (the same modules and calls as mmpretrain's ``SimSiam.loss``), ``w=1`` the
denoising autoencoder on the same two views. The paper's ``w`` per experiment (the
configs in ``configs/sidae``): 0.5 for its linear evaluations (CIFAR-10, MNIST,
Fashion-MNIST); STL-10 0.25 by its text but 0.5 by its Table 1 caption
(``sidae_r18_stl10.py`` takes 0.25, ``sidae_r18_stl10_w0.5.py`` the caption's); 0.125
for the encoders it fine-tunes (``sidae_r18_<data>_w0.125_finetune.py``).

Inputs: ``[view_1, view_2, clean]`` from :class:`sslreg.datasets.SidAEViews`
(``w=0`` also accepts the two views alone).
"""
from typing import List, Optional, Sequence, Union

import torch
from mmengine.registry import MODELS
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from torch import nn

from ..losses.sidae import dae_loss, sidae_terms


class SidAEDecoder(nn.Module):
    """FC, then five 3x3 transposed convolutions (stride 2, padding 1, output padding 1).

    The FC maps ``z`` to ``channels[0]`` maps of side ``out_size / 32`` (1 for 32x32);
    transposed convolutions go ``channels[0] -> ... -> channels[4] -> out_channels``,
    each followed by BN and ReLU except the last, whose output is linear (it is
    compared with the normalized clean image). The BN/ReLU placement is ours: the
    paper specifies the layer types and strides.

    Args:
        in_channels: dimension of ``z`` (the projector's output).
        channels: widths after the FC and after the first four transposed convs.
        out_channels: image channels (3).
        out_size: side of the reconstructed image, a multiple of 32.
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = (512, 256, 128, 64, 32),
                 out_channels: int = 3, out_size: int = 32):
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f'channels needs 5 widths (after the FC and after each of the '
                             f'first four transposed convolutions), got {channels}')
        if out_size % 32:
            raise ValueError(f'five stride-2 layers multiply the side by 32: out_size must '
                             f'be a multiple of 32, got {out_size}')
        self.start = out_size // 32
        self.channels = list(channels)
        self.fc = nn.Sequential(
            nn.Linear(in_channels, channels[0] * self.start * self.start), nn.ReLU(inplace=True))
        layers = []
        widths = list(channels) + [out_channels]
        for i in range(5):
            layers.append(nn.ConvTranspose2d(widths[i], widths[i + 1], kernel_size=3, stride=2,
                                             padding=1, output_padding=1))
            if i < 4:
                layers += [nn.BatchNorm2d(widths[i + 1]), nn.ReLU(inplace=True)]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], self.channels[0], self.start, self.start)
        return self.deconv(x)


@MODELS.register_module()
class SidAE(BaseSelfSupervisor):
    """SimSiam + decoder; loss ``w * L_dae + (1 - w) * L_si``.

    Args:
        backbone, neck, head: as mmpretrain's ``SimSiam`` (ResNet, 3-layer
            ``NonLinearNeck``, ``LatentPredictHead`` with a 2-layer predictor and
            ``CosineSimilarityLoss``).
        decoder: :class:`SidAEDecoder` arguments (``in_channels`` = the neck's
            ``out_channels``).
        w: weight of the reconstruction loss, in [0, 1] (default 0.5, the paper's for
            linear evaluation; see the module docstring for its other experiments).
    """

    def __init__(self, backbone: dict, neck: dict, head: dict, decoder: dict,
                 w: float = 0.5, pretrained: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None):
        super().__init__(backbone=backbone, neck=neck, head=head, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not 0 <= w <= 1:
            raise ValueError(f'w must be in [0, 1], got {w}')
        self.w = float(w)
        self.decoder = decoder if isinstance(decoder, nn.Module) else SidAEDecoder(**decoder)

    def loss(self, inputs: List[torch.Tensor], data_samples=None, **kwargs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError('SidAE takes [view_1, view_2, clean] (SidAEViews in the '
                             'pipeline)')
        if self.w > 0 and len(inputs) < 3:
            raise ValueError(f'SidAE with w={self.w} reconstructs the clean image and needs '
                             'it as the third input: put SidAEViews in the pipeline')
        img_v1, img_v2 = inputs[0], inputs[1]
        # As mmpretrain's SimSiam.loss, call for call.
        z1 = self.neck(self.backbone(img_v1))[0]
        z2 = self.neck(self.backbone(img_v2))[0]
        l_si = l_dae = None
        if self.w < 1:
            l_si = 0.5 * (self.head.loss(z1, z2) + self.head.loss(z2, z1))
        if self.w > 0:
            l_dae = dae_loss(inputs[2], self.decoder(z1), self.decoder(z2))
        return sidae_terms(l_dae, l_si, self.w)

    def reconstruct(self, inputs: torch.Tensor) -> torch.Tensor:
        """The decoder's reconstruction of (normalized) images."""
        return self.decoder(self.neck(self.backbone(inputs))[0])
