# ResNet-18 on the digits-CUB data, no regularizer: the twin of the demo config.
# mmpretrain's stock CUB recipe (SGD lr 0.01, momentum 0.9, Nesterov, wd 5e-4, warm-up
# then cosine: mmpretrain::_base_/schedules/cub_bs64.py) shrunk to a few CPU minutes.
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    '../_base_/datasets/digits_cub.py',
    'mmpretrain::_base_/schedules/cub_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(head=dict(num_classes=10, topk=(1, )))

max_epochs = 4
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    # no T_max / end: MMEngine ends it at train_cfg.max_epochs, so
    # --cfg-options train_cfg.max_epochs=N rescales the cosine too
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=5),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=32)
# Logged to TensorBoard too (tensorboard --logdir <work_dir>/<timestamp>/vis_data), beside
# scalars.json; the visualizer type stays the framework's (its default_runtime.py).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
