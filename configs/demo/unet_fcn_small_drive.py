# UNet-S5-D16 + FCN head on the small DRIVE-layout fundus set: mmseg's stock
# unet-s5-d16_fcn_4xb4-40k_drive-64x64 recipe with a CPU-sized schedule.
_base_ = [
    'mmseg::_base_/models/fcn_unet_s5-d16.py',
    '../_base_/datasets/small_drive.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

crop_size = (64, 64)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor,
             test_cfg=dict(crop_size=(64, 64), stride=(42, 42)))

max_iters = 40
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=20)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters,
                        by_epoch=False)]
default_hooks = dict(logger=dict(type='LoggerHook', interval=5, log_metric_by_epoch=False),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=20,
                                     max_keep_ckpts=2))
randomness = dict(seed=0)
# Logged to TensorBoard too (tensorboard --logdir <work_dir>/<timestamp>/vis_data), beside
# scalars.json; the visualizer type stays the framework's (its default_runtime.py).
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
