r"""``SERDINO``: DINO + SER (the SER machinery is :class:`~sslreg.models.ser.SERMixin`).

DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV
2021) is not in mmpretrain 1.2, so this is a compact implementation: its loss, centre
and teacher-temperature schedule are :class:`~sslreg.losses.dino.DINOLoss`
(:mod:`sslreg.losses.dino`, equations there); this file holds the projection head, the
EMA teacher and the OpenMMLab side (iteration counter, freezing the prototypes).
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.registry import MODELS
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.models.utils import CosineEMA
from torch import nn

from ..losses.dino import DINOLoss
from .ser import SERMixin

__all__ = ['DINOProjectionHead', 'SERDINO']


class DINOProjectionHead(nn.Module):
    """DINO's projection head (Caron et al., ICCV 2021, ``DINOHead`` in their code):
    MLP ``in -> hidden (GELU) ... -> bottleneck``, L2 normalisation, then a
    weight-normalised linear layer to ``out_channels`` prototypes (no bias) whose
    norm is fixed to 1 when ``norm_last_layer``. Not registered (mmdet already has a
    ``DINOHead``, the DETR-like detector's); built by ``SERDINO`` from its ``head`` dict.
    """

    def __init__(self, in_channels: int, out_channels: int = 65536, hidden_channels: int = 2048,
                 bottleneck_channels: int = 256, num_layers: int = 3, norm_last_layer: bool = True):
        super().__init__()
        num_layers = max(num_layers, 1)
        if num_layers == 1:
            layers = [nn.Linear(in_channels, bottleneck_channels)]
        else:
            layers = [nn.Linear(in_channels, hidden_channels), nn.GELU()]
            for _ in range(num_layers - 2):
                layers += [nn.Linear(hidden_channels, hidden_channels), nn.GELU()]
            layers.append(nn.Linear(hidden_channels, bottleneck_channels))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # weight norm by hand (W = g * v / ||v||): deep-copies cleanly into the teacher
        self.last_v = nn.Parameter(torch.empty(out_channels, bottleneck_channels))
        nn.init.trunc_normal_(self.last_v, std=0.02)
        self.last_g = nn.Parameter(torch.ones(out_channels, 1), requires_grad=not norm_last_layer)
        self.freeze_last_layer = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        w = self.last_g * F.normalize(self.last_v, dim=1)
        if self.freeze_last_layer:  # DINO freezes the prototypes for the first epoch
            w = w.detach()
        return x @ w.T


def _legacy_center_key(module, state_dict, prefix, *_):
    """Checkpoints written before the loss moved to :class:`DINOLoss` hold the centre as
    ``center``; it is ``dino_loss.center`` now."""
    old, new = prefix + 'center', prefix + 'dino_loss.center'
    if old in state_dict and new not in state_dict:
        state_dict[new] = state_dict.pop(old)


@MODELS.register_module()
class SERDINO(SERMixin, BaseSelfSupervisor):
    r"""DINO + SER, with two global crops (SER's DINO runs use ``--local_crops_number 0``):

    * student = backbone + :class:`DINOProjectionHead`; teacher = its EMA
      (``CosineEMA``: momentum of the new weights ``base_momentum`` = 1 - 0.996,
      cosine-annealed to 0 over training as DINO's teacher momentum goes to 1);
    * :math:`\mathcal{L}_{inv}` = :class:`~sslreg.losses.dino.DINOLoss` of the student
      outputs of the two views against the teacher's (``self.dino_loss``: centre
      ``dino_loss.center``, momentum ``center_momentum`` 0.9, all ranks; student
      temperature 0.1);
    * teacher temperature linear from ``warmup_teacher_temp`` to ``teacher_temp`` over
      ``warmup_teacher_temp_iters`` (the step is MMEngine's message hub ``iter``);
      prototypes frozen for ``freeze_last_layer_iters``.

    DINO defaults (their ``main_dino.py``): out 65536, hidden 2048, bottleneck 256,
    teacher temperature 0.04 (no warm-up), momentum 0.996, centre momentum 0.9,
    ``norm_last_layer`` True, last layer frozen for 1 epoch. SER's DINO run
    (released ``run_pretrain.sh``) changes ``norm_last_layer`` to False, the teacher
    momentum to 0.982, gradient clipping to 0.3, and uses ``lambda_equiv`` 0.3,
    ``tau`` 0.4 (set in ``configs/ser``).
    """

    SER_DEFAULTS = dict(SERMixin.SER_DEFAULTS, tau=0.4, lambda_equiv=0.3)

    def __init__(self, backbone: dict, head: Optional[dict] = None, base_momentum: float = 0.004,
                 student_temp: float = 0.1, teacher_temp: float = 0.04,
                 warmup_teacher_temp: float = 0.04, warmup_teacher_temp_iters: int = 0,
                 center_momentum: float = 0.9, freeze_last_layer_iters: int = 0,
                 ser: Optional[dict] = None, **kwargs):
        backbone_module = backbone if isinstance(backbone, nn.Module) else MODELS.build(backbone)
        head_cfg = dict(head or {})
        head_cfg.setdefault('in_channels', backbone_module.embed_dims)
        head_module = DINOProjectionHead(**head_cfg)
        super().__init__(backbone=backbone_module, head=head_module, **kwargs)
        self.teacher = CosineEMA(nn.Sequential(self.backbone, self.head), momentum=base_momentum)
        self.dino_loss = DINOLoss(head_cfg.get('out_channels', 65536), teacher_temp=teacher_temp,
                                  warmup_teacher_temp=warmup_teacher_temp,
                                  warmup_teacher_temp_steps=warmup_teacher_temp_iters,
                                  student_temp=student_temp, center_momentum=center_momentum)
        self.freeze_last_layer_iters = freeze_last_layer_iters
        self.register_load_state_dict_pre_hook(_legacy_center_key)
        self._init_ser(ser)

    def _iter(self) -> int:
        it = MessageHub.get_current_instance().get_info('iter')
        return int(it) if it is not None else 0

    def loss(self, inputs: List[torch.Tensor], data_samples, **kwargs):
        step = self._iter()
        self.head.freeze_last_layer = step < self.freeze_last_layer_iters
        with torch.no_grad():
            self.teacher.update_parameters(nn.Sequential(self.backbone, self.head))
        t_backbone, t_head = self.teacher.module[0], self.teacher.module[1]
        if self.ser_split(inputs[0].shape[0]) == 0:
            cls1, cls2 = self.backbone(inputs[0])[0], self.backbone(inputs[1])[0]
            with torch.no_grad():
                c1, c2 = t_backbone(inputs[0])[0], t_backbone(inputs[1])[0]
            nce = None
        else:
            nb, cls1, cls2, equiv, nce = self.ser_forward(inputs, data_samples, self.backbone)
            with torch.no_grad():
                c1, c2 = self.ser_target_cls(t_backbone, inputs, nb, equiv)
        s1, s2 = self.head(cls1), self.head(cls2)
        with torch.no_grad():
            t1, t2 = t_head(c1), t_head(c2)
        loss_inv = self.dino_loss((s1, s2), (t1, t2), step)  # also moves the centre
        return self.ser_losses(loss_inv, nce)
