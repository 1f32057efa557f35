# SVHN for configs/sim/cifar/*_svhn*.py: the SIM paper trains SVHN with its CIFAR-10 recipe
# (App. E.5: SGD lr 0.1, momentum 0.9, wd 1e-4, batch 128, 200 epochs, steps at 100/150,
# gamma 0.1), so this inherits cifar10_recipe.py and swaps the data only.
# Data: sslreg's SVHN dataset (mmpretrain has none) on the official cropped-digit files
# data/svhn/{train_32x32.mat, test_32x32.mat}: 73,257 train / 26,032 test images; the
# 531,131 'extra' images are not used (the paper does not say it used them).
# sslreg's choices, the paper states no SVHN augmentation or normalization:
# - RandomCrop 32 with 4 px padding as for CIFAR, but no horizontal flip (a mirrored
#   digit is not the same digit);
# - SVHN's own per-channel mean/std of the train split, 0-255 scale (the commonly used
#   0.4377/0.4438/0.4728 and 0.1980/0.2010/0.1970).
_base_ = ['./cifar10_recipe.py']

dataset_type = 'SVHN'

data_preprocessor = dict(num_classes=10, mean=[111.61, 113.16, 120.56],
                         std=[50.50, 51.26, 50.24], to_rgb=False)
train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(dataset=dict(_delete_=True, type=dataset_type, data_root='data/svhn',
                                     split='train', pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(_delete_=True, type=dataset_type, data_root='data/svhn',
                                   split='test', pipeline=test_pipeline))
test_dataloader = val_dataloader
