r"""SER on SSL algorithms: ``SERMoCoV3``, ``SERBarlowTwins`` here, ``SERDINO`` in
:mod:`sslreg.models.ser_dino`; the shared machinery is :class:`SERMixin`.

Soft Equivariance Regularization (Lee, Kim, Kim, Lee, Lee, ICLR 2026,
arXiv:2603.06693; authors' code github.com/aitrics-chris/SER). The base method's
invariance loss stays on the final embedding; a patch-wise NT-Xent
(:mod:`sslreg.losses.ser`) asks the token map after block ``k`` of a
:class:`~sslreg.models.LateClsViT` to transform with the image under rotations by
90 degrees, flips and patch-aligned scalings (:mod:`sslreg.geometry`):

.. math::

    \mathcal{L} = \mathcal{L}_{inv} + \lambda\, \mathcal{L}_{equiv}

The batch (of each rank) is split: the first ``B - n`` samples form the
**baseline sub-batch** (the base method's usual two crops, views 0 and 1 of
:class:`~sslreg.datasets.GeometricGroupViews`), the last ``n = round(equiv_ratio * B)``
(at least ``min_equiv_samples`` when ``equiv_ratio > 0``) the **equivariance
sub-batch**: the equivariance views 2 and 3 (``e_1, e_2``: by default the whole image,
uncropped, as in the paper; the released code's shared crop with ``equiv_crop=
'shared_crop'``; independent photometric jitter) moved by the sampled group elements,
:math:`x_1 = g_1 e_1`, :math:`x_2 = g_2 e_2`. (A three-view batch, the earlier layout,
is read as ``e_1, e_2 = v_0, v_2``.) Both
sub-batches feed :math:`\mathcal{L}_{inv}` (their final embeddings are
concatenated before the neck, so BatchNorm in the neck sees the whole batch); only
the equivariance sub-batch feeds :math:`\mathcal{L}_{equiv}`. The geometry is applied
here, on the normalized batch, rather than in the data pipeline: views of a batch
must stack, and the image and token-map actions then share one resampling kernel.
Equivariance views of different sizes are run through the backbone in buckets of
equal shape (a ViT treats samples independently, so bucketing changes nothing but
speed).

The equivariance path has no ``no_grad`` and a gradient-keeping cross-rank gather:
its gradient reaches the projector and blocks ``1..k`` (and nothing after block
``k``: the token map is read before the CLS token joins). With ``equiv_ratio = 0`` the
algorithm *is* its base (the base class's ``loss`` runs), and ``lambda_equiv = 0``
skips the equivariance loss.

Loss keys: ``loss_inv`` (the base loss), ``loss_equiv`` (:math:`\lambda\mathcal{L}_{equiv}`,
only when computed) and the logged-only ``equiv_nce`` (:math:`\mathcal{L}_{equiv}`).

Defaults and where they come from (the ``ser`` dict of each algorithm):

=====================  ================  =====================================================
option                 default           source
=====================  ================  =====================================================
layer ``k``            3                 paper / released ``--equiv-layer 3`` (LateClsViT's
                                         ``cls_insert_layer``)
``tau``                0.2 MoCo v3 / BT, the paper's grouping (one tau for MoCo v3 and
                       0.4 DINO          Barlow Twins, another for DINO; its numbers were not
                                         readable here): 0.2 is sslreg's earlier MoCo v3 value
                                         (an earlier issue: "as in the paper"), 0.4 the
                                         released DINO value (``--temperature 0.4``). The
                                         released ``run_pretrain.sh`` has 0.5 (MoCo v3) /
                                         0.4 (BT) / 0.4 (DINO), the checkpoints its
                                         ``config/eval.yaml`` lists were trained at 0.4.
                                         See /tmp/fidelity_ser_sidae.md
``lambda_equiv``       1.0 MoCo v3 / BT,  released ``run_pretrain.sh`` (``--equiv-lambda``)
                       0.3 DINO
``equiv_ratio``        0.01              released ``--equiv-ratio-start 0.01`` (constant
                                         schedule): ~1% of each batch, which is why SER
                                         adds only ~1.008x FLOPs
``proj_channels``      512               released ``projector_equiv``: 1x1 conv C->512,
                                         GELU, 1x1 conv 512->512, no biases
scale range / aspect   0.7-1.3 / 3/4-4/3 released ``--equiv-scale``, ``--equiv-aspect-ratio``
                                         (area factor, as ``Aug_equi.get_params``)
resampling             bilinear          the issue; the released code uses bicubic
``eval_group``         4 per family,     the equivariance score (``predict``): group elements
                       seed 0, the       sampled, with a fixed seed, from the group the views
                       views' group      use (GeometricGroupViews' defaults)
=====================  ================  =====================================================

The equivariance score of ``predict`` (val / test) is computed by
:mod:`sslreg.evaluation.equivariance` (``ser_equivariance_predict``,
``ser_eval_transforms``), found by name in MMEngine's ``FUNCTIONS`` registry: models do
not import evaluation; ``import sslreg`` registers both.
"""
from collections import OrderedDict
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.registry import FUNCTIONS, MODELS
from mmpretrain.models.selfsup.barlowtwins import BarlowTwins
from mmpretrain.models.selfsup.mocov3 import MoCoV3
from torch import nn

from .. import geometry as G
from ..losses.ser import ser_token_map_loss

__all__ = ['SERMixin', 'SERProjector', 'SERMoCoV3', 'SERBarlowTwins']

META_G1, META_G2 = 'ser_g1', 'ser_g2'
#: Names (MMEngine ``FUNCTIONS``) of the equivariance scoring sslreg.evaluation registers.
PREDICT_FN, EVAL_TRANSFORMS_FN = 'ser_equivariance_predict', 'ser_eval_transforms'


class SERProjector(nn.Sequential):
    """:math:`P`: 1x1 conv ``C -> hidden``, GELU, 1x1 conv ``hidden -> out``, no biases
    (the released ``projector_equiv``); acts on ``(B, C, h, w)`` token maps."""

    def __init__(self, in_channels: int, hidden_channels: int = 512, out_channels: int = 512):
        super().__init__(
            nn.Conv2d(in_channels, hidden_channels, 1, bias=False), nn.GELU(),
            nn.Conv2d(hidden_channels, out_channels, 1, bias=False))


def _scoring(name: str) -> Callable:
    fn = FUNCTIONS.get(name)
    if fn is None:
        raise RuntimeError(f"SER's equivariance score ('{name}') is registered by "
                           "sslreg.evaluation: import sslreg (custom_imports=dict(imports="
                           "['sslreg'])) or sslreg.evaluation")
    return fn


def _bucket_by_shape(xs: Sequence[torch.Tensor]) -> 'OrderedDict[tuple, List[int]]':
    buckets: 'OrderedDict[tuple, List[int]]' = OrderedDict()
    for i, x in enumerate(xs):
        buckets.setdefault(tuple(x.shape), []).append(i)
    return buckets


class SERMixin:
    """Shared SER machinery; mixed into an SSL algorithm before its base class.

    The algorithm calls :meth:`_init_ser` after its base ``__init__``, and in ``loss``:
    :meth:`ser_split` (how many samples go to the equivariance sub-batch),
    :meth:`ser_views` (the geometric views), :meth:`ser_encode` (backbone over the
    views, bucketed; CLS features and token maps) and :meth:`ser_loss`
    (:math:`\\mathcal{L}_{equiv}`).
    """

    SER_DEFAULTS = dict(lambda_equiv=1.0, tau=0.2, equiv_ratio=0.01, proj_channels=512,
                        min_equiv_samples=2, resize_mode='bilinear', gather=True,
                        eval_group=None)

    def _init_ser(self, ser: Optional[dict]):
        cfg = dict(self.SER_DEFAULTS)
        unknown = set(ser or {}) - set(cfg)
        if unknown:
            raise TypeError(f'unknown SER options {sorted(unknown)}; known: {sorted(cfg)}')
        cfg.update(ser or {})
        if not 0 <= cfg['equiv_ratio'] <= 1:
            raise ValueError(f"equiv_ratio must be in [0, 1], got {cfg['equiv_ratio']}")
        if cfg['lambda_equiv'] < 0 or not cfg['tau'] > 0:
            raise ValueError('lambda_equiv must be >= 0 and tau > 0, got '
                             f"{cfg['lambda_equiv']} and {cfg['tau']}")
        if not hasattr(self.backbone, 'forward_with_tokens'):
            raise TypeError(f'SER needs a backbone with forward_with_tokens (LateClsViT), got '
                            f'{type(self.backbone).__name__}')
        self.ser_cfg = cfg
        self.lambda_equiv = float(cfg['lambda_equiv'])
        self.equiv_tau = float(cfg['tau'])
        self.equiv_ratio = float(cfg['equiv_ratio'])
        self.ser_projector = SERProjector(self.backbone.embed_dims, cfg['proj_channels'],
                                          cfg['proj_channels'])

    # ------------------------------------------------------------------ pieces

    @property
    def patch_size(self) -> int:
        return int(self.backbone.patch_embed.projection.stride[0])

    def ser_split(self, batch_size: int) -> int:
        """Size of the equivariance sub-batch of a local batch of ``batch_size``."""
        if self.equiv_ratio == 0:
            return 0
        n = int(round(self.equiv_ratio * batch_size))
        return min(batch_size, max(n, int(self.ser_cfg['min_equiv_samples'])))

    @staticmethod
    def ser_group_elements(data_samples) -> Tuple[List[G.GroupElement], List[G.GroupElement]]:
        g1s, g2s = [], []
        for ds in data_samples:
            meta = ds.metainfo if hasattr(ds, 'metainfo') else ds
            if META_G1 not in meta or META_G2 not in meta:
                raise KeyError(
                    f"SER's equivariance sub-batch needs the group elements '{META_G1}' and "
                    f"'{META_G2}' in each data sample's metainfo: use GeometricGroupViews in "
                    f"the pipeline and PackInputs(meta_keys=(..., '{META_G1}', '{META_G2}'))")
            g1s.append(G.GroupElement.from_tuple(meta[META_G1]))
            g2s.append(G.GroupElement.from_tuple(meta[META_G2]))
        return g1s, g2s

    def ser_views(self, e1: torch.Tensor, e2: torch.Tensor, data_samples):
        """``x1_i = g1_i . e1_i``, ``x2_i = g2_i . e2_i`` for the equivariance views
        ``e1, e2`` (lists; sizes may differ)."""
        g1s, g2s = self.ser_group_elements(data_samples)
        mode, unit = self.ser_cfg['resize_mode'], self.patch_size
        x1s = G.act_each(list(e1), g1s, unit=unit, mode=mode)
        x2s = G.act_each(list(e2), g2s, unit=unit, mode=mode)
        return x1s, x2s, g1s, g2s

    def ser_encode(self, backbone: nn.Module, xs: Sequence[torch.Tensor],
                   with_tokens: Union[bool, Sequence[bool]]):
        """Backbone over single images ``xs`` (C, H, W), one forward per distinct shape.

        Returns ``(cls, tokens)``: ``cls`` ``(len(xs), C)`` (the backbone's first output),
        ``tokens`` a list of ``(C, h, w)`` maps where ``with_tokens`` (a bool, or one per
        image) asks for them, else None entries."""
        want = [bool(with_tokens)] * len(xs) if isinstance(with_tokens, bool) else list(with_tokens)
        cls = [None] * len(xs)
        tokens = [None] * len(xs)
        for _, idx in _bucket_by_shape(xs).items():
            batch = torch.stack([xs[i] for i in idx])
            if any(want[i] for i in idx):
                outs, tok = backbone.forward_with_tokens(batch)
            else:
                outs, tok = backbone(batch), None
            for j, i in enumerate(idx):
                cls[i] = outs[0][j]
                if want[i]:
                    tokens[i] = tok[j]
        return torch.stack(cls), tokens

    def ser_loss(self, tok1: Sequence[torch.Tensor], tok2: Sequence[torch.Tensor],
                 g1s: Sequence[G.GroupElement], g2s: Sequence[G.GroupElement]) -> torch.Tensor:
        r""":math:`\mathcal{L}_{equiv}` of per-image token maps (view 1, view 2):
        :func:`~sslreg.losses.ser.ser_token_map_loss` of the projected maps and
        :math:`g_{rel} = g_2 g_1^{-1}`, with :func:`sslreg.geometry.act` as the action."""
        g_rel = [G.relative(g1, g2) for g1, g2 in zip(g1s, g2s)]  # x2 = g_rel . x1
        return ser_token_map_loss(self._project(tok1), self._project(tok2), g_rel,
                                  partial(G.act, mode=self.ser_cfg['resize_mode']), G.inverse,
                                  self.equiv_tau, gather=self.ser_cfg['gather'])

    def _project(self, maps: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        out = [None] * len(maps)
        for _, idx in _bucket_by_shape(maps).items():
            proj = self.ser_projector(torch.stack([maps[i] for i in idx]))
            for j, i in enumerate(idx):
                out[i] = proj[j]
        return out

    def _equiv_active(self) -> bool:
        return self.lambda_equiv > 0

    def ser_forward(self, inputs: List[torch.Tensor], data_samples, backbone: nn.Module):
        """Online pass shared by the algorithms.

        Returns ``(n_base, cls_a, cls_b, equiv, nce)``: the size of the baseline
        sub-batch; CLS features ``(B, C)`` of the two branches (baseline sub-batch
        first, then the equivariance sub-batch); ``equiv`` = ``(x1s, x2s)`` for the
        momentum/teacher branch; ``nce`` = :math:`\\mathcal{L}_{equiv}` or None."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 3:
            raise ValueError('SER with equiv_ratio > 0 needs four views per sample (two '
                             'baseline crops and two equivariance views; three in the '
                             'earlier layout): use GeometricGroupViews in the pipeline')
        B = inputs[0].shape[0]
        n_eq = self.ser_split(B)
        nb = B - n_eq
        # views 2, 3: the equivariance views (GeometricGroupViews); a three-view batch is
        # the earlier layout, whose equivariance views were views 0 and 2 (shared crop)
        e1, e2 = (inputs[2], inputs[3]) if len(inputs) >= 4 else (inputs[0], inputs[2])
        x1s, x2s, g1s, g2s = self.ser_views(e1[nb:], e2[nb:], data_samples[nb:])
        want = self._equiv_active()
        # One pass over every view, bucketed by shape: the baseline views share a bucket
        # with any equivariance view of the same size (fewer, larger forwards).
        views = [*inputs[0][:nb], *inputs[1][:nb], *x1s, *x2s]
        cls, tokens = self.ser_encode(backbone, views, [False] * (2 * nb) + [want] * (2 * n_eq))
        cls_a = torch.cat([cls[:nb], cls[2 * nb:2 * nb + n_eq]])
        cls_b = torch.cat([cls[nb:2 * nb], cls[2 * nb + n_eq:]])
        nce = None
        if want:
            tok1, tok2 = tokens[2 * nb:2 * nb + n_eq], tokens[2 * nb + n_eq:]
            nce = self.ser_loss(tok1, tok2, g1s, g2s)
        return nb, cls_a, cls_b, (x1s, x2s), nce

    def ser_target_cls(self, backbone: nn.Module, inputs, nb: int,
                       equiv) -> Tuple[torch.Tensor, torch.Tensor]:
        """CLS features of a momentum / teacher backbone, same layout as ser_forward's."""
        x1s, x2s = equiv
        n_eq = len(x1s)
        cls, _ = self.ser_encode(backbone, [*inputs[0][:nb], *inputs[1][:nb], *x1s, *x2s], False)
        return (torch.cat([cls[:nb], cls[2 * nb:2 * nb + n_eq]]),
                torch.cat([cls[nb:2 * nb], cls[2 * nb + n_eq:]]))

    def ser_losses(self, loss_inv: torch.Tensor,
                   nce: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        losses = dict(loss_inv=loss_inv)
        if nce is not None:
            losses['loss_equiv'] = self.lambda_equiv * nce
            losses['equiv_nce'] = nce.detach()
        return losses

    # ------------------------------------------------------------------ evaluation

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode=mode)

    def eval_transforms(self):
        """The group elements the equivariance score uses (sampled once, fixed seed):
        ``ser_eval_transforms`` (:mod:`sslreg.evaluation.equivariance`) of the
        ``eval_group`` option (a dict of ``sample_transforms``' arguments; None = its
        defaults, the views' group)."""
        if getattr(self, '_eval_transforms', None) is None:
            self._eval_transforms = _scoring(EVAL_TRANSFORMS_FN)(self.ser_cfg.get('eval_group'))
        return self._eval_transforms

    def predict(self, inputs, data_samples=None):
        """Equivariance scores per sample, for validation / test with
        ``EquivarianceMetric``: ``ser_equivariance_predict``
        (:mod:`sslreg.evaluation.equivariance`) puts ``equiv_scores``,
        ``{'<location>/<transform>': cosine}``, in each data sample (locations ``final``,
        the paper's Table 4, and ``layer_k``, the map the SER loss reads)."""
        return _scoring(PREDICT_FN)(self, inputs, data_samples)


# =========================================================================== MoCo v3


@MODELS.register_module()
class SERMoCoV3(SERMixin, MoCoV3):
    """MoCo v3 + SER. Arguments of mmpretrain's ``MoCoV3`` plus ``ser`` (a dict:
    ``lambda_equiv`` 1.0, ``tau`` 0.2, ``equiv_ratio`` 0.01, ``proj_channels`` 512,
    ``min_equiv_samples`` 2, ``resize_mode`` 'bilinear', ``gather`` True; see the
    module docstring for their sources). The backbone must be a ``LateClsViT``."""

    SER_DEFAULTS = dict(SERMixin.SER_DEFAULTS, tau=0.2, lambda_equiv=1.0)

    def __init__(self, backbone: dict, neck: dict, head: dict, base_momentum: float = 0.01,
                 ser: Optional[dict] = None, **kwargs):
        super().__init__(backbone=backbone, neck=neck, head=head, base_momentum=base_momentum,
                         **kwargs)
        self._init_ser(ser)

    def loss(self, inputs: List[torch.Tensor], data_samples, **kwargs):
        if self.ser_split(inputs[0].shape[0]) == 0:
            return dict(loss_inv=MoCoV3.loss(self, inputs[:2], data_samples)['loss'])
        nb, cls1, cls2, equiv, nce = self.ser_forward(inputs, data_samples, self.backbone)
        q1 = self.neck((cls1,))[0]
        q2 = self.neck((cls2,))[0]
        with torch.no_grad():
            self.momentum_encoder.update_parameters(nn.Sequential(self.backbone, self.neck))
            m_backbone, m_neck = self.momentum_encoder.module[0], self.momentum_encoder.module[1]
            c1, c2 = self.ser_target_cls(m_backbone, inputs, nb, equiv)
            k1 = m_neck((c1,))[0]
            k2 = m_neck((c2,))[0]
        loss_inv = self.head.loss(q1, k2) + self.head.loss(q2, k1)
        return self.ser_losses(loss_inv, nce)


# =========================================================================== Barlow Twins


@MODELS.register_module()
class SERBarlowTwins(SERMixin, BarlowTwins):
    """Barlow Twins + SER. Arguments of mmpretrain's ``BarlowTwins`` plus ``ser``
    (defaults as ``SERMoCoV3``, ``tau`` 0.2 too: the paper shares one tau between MoCo v3
    and Barlow Twins; module docstring)."""

    SER_DEFAULTS = dict(SERMixin.SER_DEFAULTS, tau=0.2, lambda_equiv=1.0)

    def __init__(self, backbone: dict, neck: dict, head: dict, ser: Optional[dict] = None,
                 **kwargs):
        super().__init__(backbone=backbone, neck=neck, head=head, **kwargs)
        self._init_ser(ser)

    def loss(self, inputs: List[torch.Tensor], data_samples, **kwargs):
        if self.ser_split(inputs[0].shape[0]) == 0:
            return dict(loss_inv=BarlowTwins.loss(self, inputs[:2], data_samples)['loss'])
        _, cls1, cls2, _, nce = self.ser_forward(inputs, data_samples, self.backbone)
        z1 = self.neck((cls1,))[0]
        z2 = self.neck((cls2,))[0]
        return self.ser_losses(self.head.loss(z1, z2), nce)
