"""``FrozenBackbone``: any registered backbone, fully frozen (linear-probe-style transfer).

Frozen-backbone transfer (e.g. the detection protocol of SSL papers: an SSL-pretrained
ViT whose weights never change while a pyramid neck and a detection head train) needs
more than mmpretrain's ``frozen_stages``: ``VisionTransformer._freeze_stages`` runs once
in ``__init__``, so the next ``model.train()`` puts its dropout / drop-path (and, for
CNNs, BatchNorm) back in training mode, and the frozen encoder then computes different,
stochastic features in training than in testing.

``FrozenBackbone`` builds the given backbone, sets ``requires_grad=False`` on every one
of its parameters and keeps the whole module in eval mode whatever ``train()`` is told.
It returns the backbone itself (no wrapper module), so its state-dict keys stay those of
the plain backbone -- ``backbone.layers.0...`` in a detector checkpoint, exactly as in
the SSL checkpoint it came from -- and ``init_cfg=dict(type='Pretrained', ...)`` goes in
the backbone dict as usual::

    backbone=dict(
        type='FrozenBackbone',
        backbone=dict(type='mmpretrain.VisionTransformer', arch='deit-small',
                      out_type='featmap',
                      init_cfg=dict(type='Pretrained', checkpoint='ssl.pth',
                                    prefix='backbone.')))

For SSL ViT checkpoints use ``type='TransferViT'`` (sslreg/models/transfer_vit.py) as the
inner backbone, as ``configs/det/*vit-s16*`` do: it loads SER's ``LateClsViT`` checkpoints
(patch-only ``pos_embed``, CLS token after block k) as well as standard ViT ones, and runs
each as it was pre-trained.

No gradient ever reaches the frozen parameters, so no optimizer (SGD, AdamW, weight
decay included: they skip parameters whose ``.grad`` is None) changes them.
"""
import types

from mmengine.registry import MODELS
from torch import nn


def _frozen_train(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train()`` of a frozen backbone: always eval mode (dropout off, norms frozen)."""
    return nn.Module.train(self, False)


def freeze(module: nn.Module) -> nn.Module:
    """No gradient for any parameter of ``module``, and eval mode from now on."""
    for param in module.parameters():
        param.requires_grad_(False)
    # An instance attribute shadows the class's train(): nn.Module.train of the parent
    # calls child.train(mode), which lands here; deepcopy (EMAHook) copies bound methods.
    module.train = types.MethodType(_frozen_train, module)
    module.train()
    module.frozen = True
    return module


def FrozenBackbone(backbone: dict) -> nn.Module:  # noqa: N802  (a registry type name)
    """Build ``backbone`` (a registry dict) and :func:`freeze` it; returns it."""
    return freeze(MODELS.build(backbone))


MODELS.register_module(name='FrozenBackbone', module=FrozenBackbone)
