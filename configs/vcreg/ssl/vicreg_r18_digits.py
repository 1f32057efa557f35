# VICReg with a ResNet-18 on the digits ImageNet-style folder at 32 px, sized for a CPU
# (tests and a first look): vicreg_resnet50_8xb256-coslr-100e_in1k.py with a 512-512-512
# expander, batch 32, SGD instead of LARS, 2 epochs. The loss is unchanged (25/25/1, the
# reference code's scaling).
_base_ = ['./vicreg_resnet50_8xb256-coslr-100e_in1k.py']

data_root = 'data/small/digits_imagenet/'
view_pipeline = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)]),
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
    neck=dict(in_channels=512, hid_channels=512, out_channels=512,
              norm_cfg=dict(type='BN1d')))

optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
train_cfg = dict(max_epochs=2)
# no T_max / end: the cosine spans train_cfg.max_epochs
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0)]
default_hooks = dict(logger=dict(type='LoggerHook', interval=5),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=32)

# tools/linear_eval.py: frozen backbone, linear classifier on the digits.
linear_eval = dict(
    train=dict(type='ImageNet', data_root=data_root, split='train'),
    val=dict(type='ImageNet', data_root=data_root, split='val'),
    size=32)
