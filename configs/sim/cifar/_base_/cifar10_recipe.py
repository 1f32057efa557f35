# The SIM paper's CIFAR-10 recipe (App. E.5), for configs/sim/cifar/*_cifar10*.py: SGD
# lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, 200 epochs, MultiStepLR with steps
# at epochs 100 and 150, gamma 0.1. mmpretrain's stock CIFAR-10 data (RandomCrop 32 with
# 4 px padding, horizontal flip; CIFAR-10's mean/std) and schedule (cifar10_bs128.py,
# which already has these numbers; they are restated here so the recipe reads in one
# place). Batch 128 = one GPU x 128 (the stock configs: 8 GPUs x 16); with N GPUs set
# train_dataloader.batch_size=128/N, or keep 128 per GPU and add --auto-scale-lr
# (auto_scale_lr.base_batch_size=128).
# Data: data/cifar10/cifar-10-batches-py/ (the official python archive, unpacked), read
# by mmpretrain's CIFAR10 (md5-checked; files in the same layout but not CIFAR's, e.g.
# the small digits set, need type='UncheckedCIFAR10').
_base_ = [
    'mmpretrain::_base_/datasets/cifar10_bs16.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[100, 150], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=1)
auto_scale_lr = dict(base_batch_size=128)

# the stock runtime saves every epoch (200 x up to 230 MB for ResNet-152): every 10th,
# the last 3 and the final one are kept
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3,
                                     save_last=True))
