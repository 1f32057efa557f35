# CUB-200-2011 fine-tuning of ConvNeXt-T, no regularizer. An extra, not a paper run: the
# SIM paper's CUB ConvNeXt (87.77 M parameters) is ConvNeXt-B, convnext-base_8xb8_cub.py;
# ConvNeXt-T (27.97 M with the 200-class head) is the cheaper sibling for quick runs.
# mmpretrain has no ConvNeXt CUB config: its stock ConvNeXt-T model with the stock CUB
# data (448 px) and CUB schedule (SGD lr 0.01, momentum 0.9, wd 5e-4, Nesterov, 5-epoch
# warm-up, cosine, 100 epochs, batch 64 = 8 GPUs x 8), composed as
# resnet/resnet50_8xb8_cub.py composes them.
# The ImageNet recipe's Mixup/CutMix and label smoothing are switched off: the CUB
# recipe fine-tunes every backbone with plain cross-entropy.
# Weights: mmpretrain's ImageNet-21k-pretrained ConvNeXt-T (fine-tuned on 1k, 224 px);
# download it and point `checkpoint` at the local file when offline.
_base_ = [
    'mmpretrain::_base_/models/convnext/convnext-tiny.py',
    'mmpretrain::_base_/datasets/cub_bs8_448.py',
    'mmpretrain::_base_/schedules/cub_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

pretrained = 'https://download.openmmlab.com/mmclassification/v0/convnext/convnext-tiny_in21k-pre_3rdparty_in1k_20221219-7501e534.pth'  # noqa
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone')),
    head=dict(num_classes=200, loss=dict(_delete_=True, type='CrossEntropyLoss',
                                         loss_weight=1.0)),
    train_cfg=None)  # no batch augments (Mixup/CutMix) in the CUB recipe

default_hooks = dict(logger=dict(type='LoggerHook', interval=20))
