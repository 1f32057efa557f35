# The small real dataset of tools/data/make_small_datasets.py: scikit-learn's digits
# written as a CUB_200_2011 tree (10 classes, 32x32 RGB), read by mmpretrain's own CUB.
# mmpretrain's stock CUB dataset config, sized for a CPU.
_base_ = 'mmpretrain::_base_/datasets/cub_bs8_448.py'

data_root = 'data/small/digits_cub'
# CUB keeps its 200 bird names unless told otherwise: name the digits.
metainfo = dict(classes=tuple(f'digit_{d}' for d in range(10)))
data_preprocessor = dict(num_classes=10, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=36),
    dict(type='RandomCrop', crop_size=32),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=36),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline, metainfo=metainfo))
val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline, metainfo=metainfo))
test_dataloader = val_dataloader
