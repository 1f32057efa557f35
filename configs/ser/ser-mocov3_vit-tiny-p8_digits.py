# SER on MoCo v3 sized for a CPU: a 4-block ViT (96 wide, patch 8) on the digits
# ImageNet-style folder at 32 px (4x4 token lattice), CLS token after block 2, a quarter
# of each batch in the equivariance sub-batch (the paper's 1% would leave no
# equivariance sub-batch at batch 32). Equivariance views as the paper: no crop
# (equiv_crop='none': g . the whole 32 px digit; 'shared_crop' = the released code's
# shared RandomResizedCrop). Validation reports the equivariance score at the final
# layer (the paper's Table 4) and at the regularized layer k (EquivarianceMetric:
# equivariance/final/*, equivariance/layer_k/*; 4 sampled elements per family, seed 0).
# Same recipe as
# ser-mocov3_vit-small-p16_8xb256-coslr-100e_in1k.py otherwise.
# Without SER: --cfg-options model.ser.lambda_equiv=0 model.ser.equiv_ratio=0
# (then it is mmpretrain's MoCoV3 with this backbone).
_base_ = 'mmpretrain::mocov3/mocov3_vit-small-p16_16xb256-amp-coslr-300e_in1k.py'
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

data_root = 'data/small/digits_imagenet/'
crop = [dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.5, 1.), backend='pillow')]
color = [
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
photometric1 = color + [
    dict(type='GaussianBlur', magnitude_range=(0.1, 1.0), magnitude_std='inf', prob=0.5)]
photometric2 = color + [dict(type='Solarize', thr=128, prob=0.2)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='GeometricGroupViews', crop=crop, photometric=[photometric1, photometric2],
         equiv_crop='none', scale_range=(0.7, 1.3), ratio_range=(3 / 4, 4 / 3)),
    dict(type='PackInputs', meta_keys=('img_path', 'ser_g1', 'ser_g2')),
]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageNet', data_root=data_root, split='val',
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
val_evaluator = dict(type='EquivarianceMetric')
val_cfg = dict()
test_dataloader = val_dataloader
test_evaluator = val_evaluator
test_cfg = dict()

vit_tiny = dict(embed_dims=96, num_layers=4, num_heads=3, feedforward_channels=192)
model = dict(
    type='SERMoCoV3',
    base_momentum=0.01,
    backbone=dict(
        _delete_=True,
        type='LateClsViT',
        arch=vit_tiny,
        img_size=32,
        patch_size=8,
        cls_insert_layer=2,
        pos_embed_type='sincos',
        init_style='mocov3'),
    neck=dict(in_channels=96, hid_channels=256, out_channels=64, norm_cfg=dict(type='BN1d')),
    head=dict(predictor=dict(in_channels=64, hid_channels=256, out_channels=64,
                             norm_cfg=dict(type='BN1d'))),
    ser=dict(lambda_equiv=1.0, tau=0.2, equiv_ratio=0.25, proj_channels=128))

optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1))
max_epochs = 2
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
default_hooks = dict(logger=dict(type='LoggerHook', interval=10),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=32)
randomness = dict(seed=0)
