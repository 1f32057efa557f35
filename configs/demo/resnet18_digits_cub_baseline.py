# ResNet-18 on the digits-CUB data, no regularizer: the twin of the demo config.
# The stock CUB recipe (mmpretrain::resnet/resnet50_8xb8_cub.py: SGD lr 0.01, Nesterov,
# warm-up + cosine) shrunk to a few CPU minutes.
_base_ = ['mmpretrain::resnet/resnet50_8xb8_cub.py', '../_base_/datasets/digits_cub.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(
    backbone=dict(depth=18, init_cfg=None),  # the stock config loads IN-21k weights
    head=dict(in_channels=512, num_classes=10))

max_epochs = 3
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True, begin=1,
         end=max_epochs),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=5),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=32)
