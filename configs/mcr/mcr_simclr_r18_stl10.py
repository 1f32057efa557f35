# MCR on SimCLR, ResNet-18 (ImageNet stem), STL-10 at 96 px: the CIFAR-10 recipe with
# Gaussian blur in the views. STL-10 ships as binaries: extract it to image folders,
# data/stl10/{unlabeled,train,test}/<class or anything>/*.png (train/test by class).
# Pre-training reads the unlabeled split.
_base_ = ['./mcr_simclr_r18_cifar10.py']

data_root = 'data/stl10/'
image_size = 96
data_preprocessor = dict(mean=[113.9, 112.2, 103.7], std=[66.4, 65.4, 68.4], to_rgb=True)
view_pipeline = [
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.08, 1.),
         backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
]
train_dataloader = dict(dataset=dict(
    _delete_=True, type='CustomDataset', data_root=data_root, data_prefix='unlabeled',
    with_label=False, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
        dict(type='PackInputs')]))
model = dict(algorithm=dict(backbone=dict(type='ResNet', depth=18)))
linear_eval = dict(
    train=dict(type='CustomDataset', data_root=data_root, data_prefix='train'),
    val=dict(type='CustomDataset', data_root=data_root, data_prefix='test'),
    size=image_size)
