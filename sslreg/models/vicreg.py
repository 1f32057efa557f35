"""``VICReg`` (Bardes, Ponce, LeCun, ICLR 2022) as an mmpretrain self-supervised algorithm.

mmpretrain 1.2 has no VICReg; this is its algorithm in the shape of mmpretrain's
``BarlowTwins``/``SimSiam``: a backbone, an expander (mmpretrain's ``NonLinearNeck``, the
paper's 8192-8192-8192 MLP on ResNet-50) and the loss, whose variance and covariance terms
are VCReg's statistics with VICReg's scaling (:mod:`sslreg.losses.vicreg`, the equations
and the ``scaling`` choice there). No head: the loss has no parameters.

Config (the paper's ResNet-50 setting, ``configs/vcreg/ssl/vicreg_resnet50_*.py``)::

    model = dict(
        type='VICReg',
        backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                      zero_init_residual=True),
        neck=dict(type='NonLinearNeck', in_channels=2048, hid_channels=8192,
                  out_channels=8192, num_layers=3, with_bias=False, with_last_bn=False,
                  with_avg_pool=True),
        sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0)

``loss`` returns the three weighted terms, ``loss_invariance``, ``loss_variance`` and
``loss_covariance`` (MMEngine sums and logs them). VCReg on the backbone's blocks is added
the usual way, by wrapping the algorithm in ``RegularizedModel``.
"""
from typing import Dict, List

import torch
from mmengine.registry import MODELS
from mmpretrain.models.selfsup.base import BaseSelfSupervisor

from ..losses.vicreg import SCALINGS, vicreg_terms


@MODELS.register_module()
class VICReg(BaseSelfSupervisor):
    """VICReg: two views, one backbone and expander, the VICReg loss.

    Args:
        backbone, neck, data_preprocessor, init_cfg: as mmpretrain's ``BaseSelfSupervisor``
            (``neck``: the expander; it must return ``(embeddings,)`` of shape ``(n, d)``).
        sim_coeff, std_coeff, cov_coeff: :math:`\\lambda, \\mu, \\nu` (25, 25, 1).
        eps: added to the variance under the square root (1e-4).
        scaling: ``'code'`` (the reference code's and lightly's) or ``'paper'``
            (:mod:`sslreg.losses.vicreg`).
        gather: variance and covariance over all ranks' embeddings, as the reference
            code's ``FullGatherLayer`` (a no-op on one process).
    """

    def __init__(self, backbone: dict, neck: dict, head=None, sim_coeff: float = 25.0,
                 std_coeff: float = 25.0, cov_coeff: float = 1.0, eps: float = 1e-4,
                 scaling: str = 'code', gather: bool = True, **kwargs):
        if head is not None:
            raise ValueError('VICReg has no head: its loss has no parameters (sim_coeff, '
                             'std_coeff, cov_coeff, eps, scaling set it)')
        if scaling not in SCALINGS:
            raise ValueError(f'VICReg scaling must be one of {SCALINGS}, got {scaling!r}')
        super().__init__(backbone=backbone, neck=neck, **kwargs)
        self.sim_coeff, self.std_coeff, self.cov_coeff = sim_coeff, std_coeff, cov_coeff
        self.eps, self.scaling, self.gather = eps, scaling, gather

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The expander's ``(n, d)`` embeddings of one view."""
        return self.neck(self.backbone(x))[0]

    def loss(self, inputs: List[torch.Tensor], data_samples=None,
             **kwargs) -> Dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError('VICReg takes two views per image (MultiView with '
                             f'num_views=2 or [1, 1]), got {type(inputs).__name__} of '
                             f'{len(inputs) if isinstance(inputs, (list, tuple)) else 1}')
        z_a, z_b = self.embed(inputs[0]), self.embed(inputs[1])
        invariance, variance, covariance = vicreg_terms(z_a, z_b, self.eps, self.scaling,
                                                        self.gather)
        return dict(loss_invariance=self.sim_coeff * invariance,
                    loss_variance=self.std_coeff * variance,
                    loss_covariance=self.cov_coeff * covariance)
