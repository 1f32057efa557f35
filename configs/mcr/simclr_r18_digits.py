# SimCLR (mmpretrain's own algorithm) with a ResNet-18 on the digits ImageNet-style folder
# at 32 px, sized for a CPU: the baseline of mcr_simclr_r18_digits.py (same data, model,
# optimizer and schedule; MCR only adds CompMod and the bi-level step).
_base_ = 'mmpretrain::simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py'
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

data_root = 'data/small/digits_imagenet/'
view_pipeline = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=32, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))

model = dict(
    backbone=dict(depth=18, norm_cfg=dict(type='BN')),
    # 3 layers: the MCR paper's projection head (so the MCR twin differs only by MCR)
    neck=dict(in_channels=512, hid_channels=512, out_channels=128, num_layers=3,
              norm_cfg=dict(type='BN1d')),
    head=dict(temperature=0.2))

# SGD instead of the stock LARS (batch 4096): a small batch on a CPU.
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
train_cfg = dict(max_epochs=2)
# no T_max / end: the cosine spans train_cfg.max_epochs, also when set from the command line
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0)]
default_hooks = dict(logger=dict(type='LoggerHook', interval=5),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=32)

# tools/linear_eval.py: frozen backbone, linear classifier on 1% / 100% of the labels.
linear_eval = dict(
    train=dict(type='ImageNet', data_root=data_root, split='train'),
    val=dict(type='ImageNet', data_root=data_root, split='val'),
    size=32)
