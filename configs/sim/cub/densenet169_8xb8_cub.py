# CUB-200-2011 fine-tuning of DenseNet-169, no regularizer. mmpretrain has no DenseNet CUB
# config: this is its stock DenseNet-169 model with the stock CUB data (448 px) and CUB
# schedule (SGD lr 0.01, momentum 0.9, wd 5e-4, Nesterov, 5-epoch warm-up, cosine,
# 100 epochs, batch 64 = 8 GPUs x 8), exactly as resnet/resnet50_8xb8_cub.py composes them.
# The paper does not state the resolution; its FLOPs fit 384 px (densenet169_8xb8_cub-384px.py).
# Weights: mmpretrain's ImageNet-1k DenseNet-169 (converted from torchvision; there is no
# public ImageNet-21k DenseNet); download it and point `checkpoint` at the local file
# when offline. The classifier checkpoint's backbone.* keys are loaded (prefix).
_base_ = [
    'mmpretrain::_base_/models/densenet/densenet169.py',
    'mmpretrain::_base_/datasets/cub_bs8_448.py',
    'mmpretrain::_base_/schedules/cub_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

pretrained = 'https://download.openmmlab.com/mmclassification/v0/densenet/densenet169_4xb256_in1k_20220426-a2889902.pth'  # noqa
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone')),
    head=dict(num_classes=200))

default_hooks = dict(logger=dict(type='LoggerHook', interval=20))
