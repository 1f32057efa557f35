# The SIM paper's CIFAR-100 recipe (App. E.5), for configs/sim/cifar/*_cifar100*.py: SGD
# lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, 200 epochs, MultiStepLR with steps
# at epochs 60, 120 and 160, gamma 0.2 (mmpretrain's resnet50_8xb16_cifar100.py has the
# same numbers). mmpretrain's stock CIFAR-100 data (RandomCrop 32 with 4 px padding,
# horizontal flip; CIFAR-100's mean/std, 100 fine classes). Batch 128 = one GPU x 128;
# with N GPUs set train_dataloader.batch_size=128/N, or keep 128 per GPU and add
# --auto-scale-lr (auto_scale_lr.base_batch_size=128).
# Data: data/cifar100/cifar-100-python/{train,test,meta} (the official python archive,
# unpacked), read by mmpretrain's CIFAR100 (md5-checked; other files in that layout need
# type='UncheckedCIFAR100').
# The configs that inherit this set model.head.num_classes=100 (the model bases have 10).
_base_ = [
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[60, 120, 160],
                       gamma=0.2)
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=1)
auto_scale_lr = dict(base_batch_size=128)

# every 10th checkpoint, the last 3 and the final one (the stock runtime keeps all 200)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3,
                                     save_last=True))
