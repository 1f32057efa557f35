# CIFAR-10-LT (LDAM's exponential long tail of the CIFAR-10 training set) with the
# long-tail recipe; the thin files set the imbalance factor (10, 50, 100).
_base_ = ['mmpretrain::_base_/datasets/cifar10_bs16.py', './resnet32_adamw-100e_lt.py']

train_dataloader = dict(
    batch_size=256, num_workers=4,
    dataset=dict(_delete_=True, type='LongTailDataset', imbalance_factor=100, seed=0,
                 dataset={{_base_.train_dataloader.dataset}}))
val_dataloader = dict(batch_size=256, num_workers=4)
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=0.016))
