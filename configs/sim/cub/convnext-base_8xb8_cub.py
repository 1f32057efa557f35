# CUB-200-2011 fine-tuning of ConvNeXt-B, no regularizer: the SIM paper's CUB "ConvNeXt"
# (its Table 3 lists 87.77 M parameters, which is ConvNeXt-B with a 200-class head:
# 88.59 M with the 1000-class head, minus 800 x 1025; ConvNeXt-T would be 27.97 M).
# mmpretrain has no ConvNeXt CUB config: its stock ConvNeXt-B model with the stock CUB
# data (448 px) and CUB schedule (SGD lr 0.01, momentum 0.9, wd 5e-4, Nesterov, 5-epoch
# warm-up, cosine, 100 epochs, batch 64 = 8 GPUs x 8), composed as
# resnet/resnet50_8xb8_cub.py composes them. The paper does not state the resolution;
# its FLOPs fit 384 px (see convnext-base_8xb8_cub-384px.py).
# The ImageNet recipe's Mixup/CutMix and label smoothing are switched off: the CUB
# recipe fine-tunes every backbone with plain cross-entropy. Stochastic depth stays the
# stock model's drop_path_rate=0.5 (the paper does not give one).
# Weights: mmpretrain's ImageNet-21k-pretrained ConvNeXt-B (fine-tuned on 1k, 224 px);
# download it and point `checkpoint` at the local file when offline.
_base_ = [
    'mmpretrain::_base_/models/convnext/convnext-base.py',
    'mmpretrain::_base_/datasets/cub_bs8_448.py',
    'mmpretrain::_base_/schedules/cub_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

pretrained = 'https://download.openmmlab.com/mmclassification/v0/convnext/convnext-base_in21k-pre-3rdparty_32xb128_in1k_20220124-eb2d6ada.pth'  # noqa
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone')),
    head=dict(num_classes=200, loss=dict(_delete_=True, type='CrossEntropyLoss',
                                         loss_weight=1.0)),
    train_cfg=None)  # no batch augments (Mixup/CutMix) in the CUB recipe

default_hooks = dict(logger=dict(type='LoggerHook', interval=20))
