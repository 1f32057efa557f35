# SER on Barlow Twins, ViT-S/16 (DeiT-S shape: 6 heads), ImageNet-1k: batch 2048
# (8 GPUs x 256), AdamW, 100 epochs, 10 warm-up (the recipe for all three SER
# configs). Inherits mmpretrain's Barlow Twins config (its BYOL-style two views, its
# 8192-8192-8192 projector and cross-correlation loss).
# SER: lambda 1.0 (released run_pretrain.sh --equiv-lambda 1.0), tau 0.2: the paper uses
# one tau for MoCo v3 and Barlow Twins (sslreg's MoCo v3 value; the released script passes
# --temperature-equiv 0.4 for Barlow Twins; see /tmp/fidelity_ser_sidae.md), 1%
# equivariance sub-batch. The released script trains Barlow
# Twins with LARS (lr 1e-4 weights / 4.8e-3 biases, clip 0.3); the AdamW lr here
# (1e-4 x 2048/256, wd 0.04) is not from the paper: tune it.
_base_ = 'mmpretrain::barlowtwins/barlowtwins_resnet50_8xb256-coslr-300e_in1k.py'
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)
# Equivariance views (GeometricGroupViews.equiv_crop): 'none' = the paper's, cropping
# disabled in the equivariance sub-batch: g . (whole image resized to the view size).
# The authors' released code instead moves view 0's RandomResizedCrop (+ flip):
# equiv_crop='shared_crop'.

crop = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
]
color = [
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
photometric1 = color + [
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=1.),
    dict(type='Solarize', thr=128, prob=0.),
]
photometric2 = color + [
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.1),
    dict(type='Solarize', thr=128, prob=0.2),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='GeometricGroupViews', crop=crop, photometric=[photometric1, photometric2],
         equiv_crop='none'),
    dict(type='PackInputs', meta_keys=('img_path', 'ser_g1', 'ser_g2')),
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))

model = dict(
    type='SERBarlowTwins',
    backbone=dict(
        _delete_=True,
        type='LateClsViT',
        arch='deit-small',
        img_size=224,
        patch_size=16,
        cls_insert_layer=3,
        drop_path_rate=0.1),
    neck=dict(in_channels=384, with_avg_pool=False),
    ser=dict(lambda_equiv=1.0, tau=0.2, equiv_ratio=0.01))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=8e-4, betas=(0.9, 0.999), weight_decay=0.04),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.,
                       custom_keys={'pos_embed': dict(decay_mult=0.),
                                    'cls_token': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=3.0))
find_unused_parameters = True

max_epochs = 100
warmup_epochs = 10
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=2048)
