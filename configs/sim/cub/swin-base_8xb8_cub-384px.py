# CUB-200-2011 fine-tuning of Swin-B (window 12, 384 px), no regularizer. mmpretrain's
# CUB Swin config is for Swin-L (swin_transformer/swin-large_8xb8_cub-384px.py); this
# inherits it and swaps the architecture to Swin-B, keeping its recipe: AdamW lr 5e-6,
# wd 5e-4 (no decay on norms, biases, position tables), grad-norm clip 5.0, 5-epoch
# linear warm-up then cosine, 100 epochs, 384 px, batch 64 = 8 GPUs x 8.
# Weights: the official ImageNet-21k-pretrained Swin-B 384 px (window 12) as converted
# by OpenMMLab (swin_base_patch4_window12_384_22kto1k); download it and point
# `checkpoint` at the local file when offline.
_base_ = ['mmpretrain::swin_transformer/swin-large_8xb8_cub-384px.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

pretrained = 'https://download.openmmlab.com/mmclassification/v0/swin-transformer/convert/swin_base_patch4_window12_384_22kto1k-d59b0d1d.pth'  # noqa
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=1024))
