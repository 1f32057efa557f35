# ResNet-50 on CUB at 384 px, no regularizer: resnet50_8xb8_cub.py with
# the image sizes of mmpretrain's own 384 px CUB data config (_base_/datasets/
# cub_bs8_384.py: short side 510, crop 384) in place of the stock 448 px ones (short side
# 600, crop 448); nothing else changes.
# Why 384: the SIM paper does not state its CUB resolution, but its Table 3 FLOPs fit
# 384 px for the CNNs: ResNet-50 12.14 G, against 12.01 G at 384 px and 16.35 G at
# 448 px (FLOPs grow with the square of the side). mmengine's FlopAnalyzer on this
# model: ResNet-50 12.08 G at 384 px, 16.44 G at 448 px.
# Use the -384px files to compare with the paper's numbers; the 448 px files are
# mmpretrain's stock CUB data (cub_bs8_448.py).
_base_ = ['./resnet50_8xb8_cub.py']

# the 448 px pipelines with the 384 px sizes swapped in (every other entry kept)
__sizes_384px = {'Resize': dict(scale=510), 'RandomCrop': dict(crop_size=384),
                 'CenterCrop': dict(crop_size=384)}
train_pipeline = [dict(t, **__sizes_384px.get(t['type'], {}))
                  for t in _base_.train_dataloader.dataset.pipeline]
test_pipeline = [dict(t, **__sizes_384px.get(t['type'], {}))
                 for t in _base_.test_dataloader.dataset.pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
