# RetinaNet (ResNet-18 + FPN) on the digits-COCO data: mmdet's stock RetinaNet recipe
# (mmdet::retinanet/retinanet_r50_fpn_1x_coco.py) shrunk to CPU minutes.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/digits_coco.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(
    # no ImageNet weights here: train every stage, BN in train mode
    backbone=dict(depth=18, init_cfg=None, frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[64, 128, 256, 512], start_level=1, num_outs=4),
    bbox_head=dict(num_classes=10,
                   anchor_generator=dict(strides=[8, 16, 32, 64], octave_base_scale=2)))

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[3],
         gamma=0.1),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=5),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=8)
# Logged to TensorBoard too (tensorboard --logdir <work_dir>/<timestamp>/vis_data), beside
# scalars.json; the visualizer type stays the framework's (its default_runtime.py).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
