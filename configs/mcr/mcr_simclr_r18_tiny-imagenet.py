# MCR on SimCLR, ResNet-18 (ImageNet stem), Tiny-ImageNet at 64 px: the STL-10 recipe.
# Layout: data/tiny-imagenet-200/train/<wnid>/... as shipped; for linear evaluation
# reorganize val/ into one sub-folder per class (val/<wnid>/*.JPEG, from
# val/val_annotations.txt).
_base_ = ['./mcr_simclr_r18_stl10.py']

data_root = 'data/tiny-imagenet-200/'
image_size = 64
data_preprocessor = dict(mean=[122.5, 114.0, 101.4], std=[70.4, 68.6, 72.0], to_rgb=True)
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
    _delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
        dict(type='PackInputs')]))
linear_eval = dict(
    train=dict(type='CustomDataset', data_root=data_root, data_prefix='train'),
    val=dict(type='CustomDataset', data_root=data_root, data_prefix='val'),
    size=image_size)
