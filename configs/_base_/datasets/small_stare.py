# The small real fundus set of tools/data/make_small_datasets.py in the STARE layout:
# crops of scikit-image's retina photograph, vessel labels made by a vesselness filter
# (not expert annotations). mmseg's stock STARE dataset config with a CPU-sized scale and
# crop (64x64 training crops; the full configs use larger ones).
_base_ = 'mmseg::_base_/datasets/stare.py'

data_root = 'data/small/STARE'
img_scale = (128, 128)
crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(dataset=dict(data_root=data_root, pipeline=train_pipeline)))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# mmseg's IoUMetric (mDice unchanged) + Dice.vessel, the vessel-class Dice the SIM paper
# reports (sslreg's VesselDiceMetric: the config using this base imports sslreg)
val_evaluator = dict(type='VesselDiceMetric', iou_metrics=['mDice'])
test_evaluator = val_evaluator
