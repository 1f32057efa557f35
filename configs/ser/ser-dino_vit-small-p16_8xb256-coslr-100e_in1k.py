# SER on DINO, ViT-S/16 (6 heads), ImageNet-1k: batch 2048 (8 GPUs x 256), AdamW, 100
# epochs, 10 warm-up. DINO is not in mmpretrain 1.2: SERDINO implements it (student /
# EMA teacher, centring, temperatures; two global crops, as SER's DINO run uses
# --local_crops_number 0).
# From the released run_pretrain.sh (DINO line): lr 1e-4 x 2048/256 = 8e-4,
# --norm_last_layer False, --momentum_teacher 0.982, --clip_grad 0.3, --equiv-lambda 0.3,
# --temperature 0.4 (SER's tau; the paper uses one tau for DINO and another for MoCo v3 /
# Barlow Twins). DINO's own defaults (main_dino.py): out 65536, student temperature
# 0.1, teacher 0.04, centre momentum 0.9, wd 0.04 -> 0.4 (cosine), prototypes frozen
# for the first epoch, global crops scale (0.4, 1).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs512_mocov3.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)
# Equivariance views (GeometricGroupViews.equiv_crop): 'none' = the paper's, cropping
# disabled in the equivariance sub-batch: g . (whole image resized to the view size).
# The authors' released code instead moves view 0's RandomResizedCrop (+ flip):
# equiv_crop='shared_crop'.

crop = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.4, 1.), backend='pillow'),
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

iters_per_epoch = 1281167 // 2048
model = dict(
    type='SERDINO',
    backbone=dict(
        type='LateClsViT',
        arch='deit-small',
        img_size=224,
        patch_size=16,
        cls_insert_layer=3,
        drop_path_rate=0.1),
    head=dict(out_channels=65536, hidden_channels=2048, bottleneck_channels=256,
              num_layers=3, norm_last_layer=False),
    base_momentum=1 - 0.982,
    student_temp=0.1,
    teacher_temp=0.04,
    warmup_teacher_temp=0.04,
    warmup_teacher_temp_iters=0,
    center_momentum=0.9,
    freeze_last_layer_iters=iters_per_epoch,
    ser=dict(lambda_equiv=0.3, tau=0.4, equiv_ratio=0.01))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=8e-4, betas=(0.9, 0.999), weight_decay=0.04),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.,
                       custom_keys={'pos_embed': dict(decay_mult=0.),
                                    'cls_token': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=0.3))
find_unused_parameters = True

max_epochs = 100
warmup_epochs = 10
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
    # DINO's weight-decay schedule 0.04 -> 0.4 (cosine)
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay', eta_min_ratio=10.,
         T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=2048)
