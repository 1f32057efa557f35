# SimSiam (mmpretrain's own algorithm) with a ResNet-18 on the digits ImageNet-style
# folder at 32 px: mmpretrain::simsiam/simsiam_resnet50_8xb32-coslr-100e_in1k.py sized
# for a CPU.
_base_ = 'mmpretrain::simsiam/simsiam_resnet50_8xb32-coslr-100e_in1k.py'
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

data_root = 'data/small/digits_imagenet/'
view_pipeline = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
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
    neck=dict(in_channels=512, hid_channels=512, out_channels=512),
    head=dict(predictor=dict(in_channels=512, hid_channels=128, out_channels=512)))

max_epochs = 2
train_cfg = dict(max_epochs=max_epochs)
# no T_max / end: MMEngine ends the cosine at train_cfg.max_epochs (rescales with it)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0)]
default_hooks = dict(logger=dict(type='LoggerHook', interval=5),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
# Logged to TensorBoard too (tensorboard --logdir <work_dir>/<timestamp>/vis_data), beside
# scalars.json; the visualizer type stays the framework's (its default_runtime.py).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
