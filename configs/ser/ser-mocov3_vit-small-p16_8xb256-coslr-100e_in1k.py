# SER on MoCo v3, ViT-S/16, ImageNet-1k: batch 2048 (8 GPUs x 256), AdamW, 100 epochs with
# 10 warm-up epochs -- the SER paper's ViT-S/16 pre-training (Lee et al., ICLR 2026).
# Inherits mmpretrain's MoCo v3 ViT-S config; what changes:
#   * backbone: LateClsViT (CLS token inserted after block 3; patch-only sin-cos positions;
#     MoCo v3's frozen patch projection and initialisation);
#   * data: GeometricGroupViews (MoCo v3's two views + the two equivariance views, and
#     the sampled group elements kept in the data samples). Equivariance views:
#     equiv_crop='none', the paper's (cropping disabled in the equivariance sub-batch:
#     g . whole image resized to 224); the released code moves view 0's
#     RandomResizedCrop instead: equiv_crop='shared_crop';
#   * SER: lambda 1.0 (released run_pretrain.sh --equiv-lambda 1.0), tau 0.2 (the paper
#     shares one tau between MoCo v3 and Barlow Twins; 0.2 is sslreg's value -- the
#     released script passes --temperature-equiv 0.5 for MoCo v3; see
#     /tmp/fidelity_ser_sidae.md), 1% of each batch in the equivariance sub-batch
#     (released --equiv-ratio-start 0.01).
#   * schedule: lr 3e-4 x 2048/256 = 2.4e-3 (released --lr 0.0003 scaled by batch/256),
#     weight decay 0.1, momentum 0.99 -> 1 (cosine), 100 epochs, 10 warm-up.
_base_ = 'mmpretrain::mocov3/mocov3_vit-small-p16_16xb256-amp-coslr-300e_in1k.py'
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

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
         equiv_crop='none', scale_range=(0.7, 1.3), ratio_range=(3 / 4, 4 / 3)),
    dict(type='PackInputs', meta_keys=('img_path', 'ser_g1', 'ser_g2')),
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))

model = dict(
    type='SERMoCoV3',
    backbone=dict(
        _delete_=True,
        type='LateClsViT',
        arch='mocov3-small',  # 384 wide, 12 blocks, 12 heads (MoCo v3's ViT-S)
        img_size=224,
        patch_size=16,
        cls_insert_layer=3,
        pos_embed_type='sincos',
        stop_grad_conv1=True,
        init_style='mocov3'),
    ser=dict(lambda_equiv=1.0, tau=0.2, equiv_ratio=0.01, proj_channels=512,
             resize_mode='bilinear'))

optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=2.4e-3, weight_decay=0.1))
find_unused_parameters = True

max_epochs = 100
warmup_epochs = 10
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=2048)
