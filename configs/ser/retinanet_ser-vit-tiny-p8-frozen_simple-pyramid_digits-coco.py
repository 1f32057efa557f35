# SER pre-training -> frozen-backbone detection, end to end on the small data: the
# frozen-backbone RetinaNet of configs/det/retinanet_vit-s16-frozen_simple-pyramid_8xb4-45k_coco.py
# (the SER paper's COCO transfer protocol: encoder fully frozen, ViTDet's simple pyramid
# and the head train) with the SER-pretrained LateClsViT of
# configs/ser/ser-mocov3_vit-tiny-p8_digits.py as the encoder, on the digits-COCO data
# (128 px canvases) for CPU minutes.
#
#   python tools/train.py configs/ser/ser-mocov3_vit-tiny-p8_digits.py
#   python tools/train.py configs/ser/retinanet_ser-vit-tiny-p8-frozen_simple-pyramid_digits-coco.py \
#       --cfg-options model.backbone.backbone.init_cfg.checkpoint=work_dirs/ser-mocov3_vit-tiny-p8_digits/epoch_2.pth
#
# The encoder is TransferViT (a LateClsViT; sslreg/models/transfer_vit.py), not mmpretrain's
# VisionTransformer: SER's weights compute the function they were trained as only with the
# CLS token joining after block k (cls_insert_layer=2, as the SER config); with
# out_type='featmap' the CLS token is dropped from the output map anyway. A standard ViT
# checkpoint of the same shape (CLS position in pos_embed) loads too and runs as a
# standard ViT.
_base_ = '../det/retinanet_vit-s16-frozen_simple-pyramid_8xb4-45k_coco.py'

ssl_checkpoint = 'work_dirs/ser-mocov3_vit-tiny-p8_digits/epoch_2.pth'
model = dict(
    backbone=dict(
        backbone=dict(
            _delete_=True,
            type='TransferViT',
            arch=dict(embed_dims=96, num_layers=4, num_heads=3, feedforward_channels=192),
            img_size=32,       # the SER checkpoint's; positions are resized per image
            patch_size=8,      # stride-8 map: 16x16 on a 128 px canvas
            cls_insert_layer=2,
            out_type='featmap',
            final_norm=True,
            init_cfg=dict(type='Pretrained', checkpoint=ssl_checkpoint, prefix='backbone.'))),
    neck=dict(in_channels=96, out_channels=64, scale_factors=(1.0, 0.5), num_outs=4),
    bbox_head=dict(num_classes=10, in_channels=64, feat_channels=64, stacked_convs=2,
                   anchor_generator=dict(strides=[8, 16, 32, 64], octave_base_scale=2)))

# the digits-COCO data (configs/_base_/datasets/digits_coco.py), on top of the same
# mmdet COCO dataset config the detection config inherits
data_root = 'data/small/digits_coco/'
metainfo = dict(classes=tuple(str(d) for d in range(10)))
img_scale = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=4)))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=150)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.889), int(max_iters * 0.963)], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(logger=dict(type='LoggerHook', interval=10),
                     checkpoint=dict(by_epoch=False, interval=150, max_keep_ckpts=1))
auto_scale_lr = dict(enable=False, base_batch_size=8)
randomness = dict(seed=0)
