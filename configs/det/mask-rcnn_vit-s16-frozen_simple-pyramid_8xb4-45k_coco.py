# Frozen-backbone detection + instance segmentation transfer of an SSL-pretrained
# ViT-S/16 (the SER paper's Table 11 protocol: 45k iterations, batch 32 = 8 GPUs x 4):
# Mask R-CNN on COCO with the encoder FULLY frozen (sslreg/models/frozen_backbone.py) and
# ViTDet's simple feature pyramid (SimplePyramidNeck: strides 4/8/16/32 from the
# stride-16 map + a max-pooled stride 64 for the RPN, as ViTDet's Mask R-CNN). Only the
# neck, RPN and RoI heads train.
#
# The SSL checkpoint (SER's LateClsViT or a standard ViT, told apart by TransferViT from
# its pos_embed; online / student encoder at prefix='backbone.') and the optimizer: as in
# retinanet_vit-s16-frozen_simple-pyramid_8xb4-45k_coco.py. Set the checkpoint with
#   --cfg-options model.backbone.backbone.init_cfg.checkpoint=/path/to/ssl_epoch_100.pth
# (+ model.backbone.backbone.arch.num_heads=12 for MoCo v3's / SER-MoCo-v3's ViT-S).
# Data: data/coco/ as mmdet reads it (instances_{train,val}2017.json with masks).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(
    imports=['sslreg', 'mmpretrain.models'],  # 'sslreg' registers FrozenBackbone too
    allow_failed_imports=False)

ssl_checkpoint = 'checkpoints/vit-small-p16_ssl.pth'  # your SSL run's checkpoint
model = dict(
    backbone=dict(
        _delete_=True,
        type='FrozenBackbone',
        backbone=dict(
            type='TransferViT',
            # ViT-S/16 (6 heads; MoCo v3's ViT-S has 12: set num_heads to the checkpoint's)
            arch=dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
            img_size=224,  # the SSL checkpoint's; pos_embed is interpolated per image
            patch_size=16,
            cls_insert_layer=3,  # SER checkpoints: their k; standard ViTs: CLS at the input
            out_type='featmap',
            final_norm=True,
            drop_rate=0.,
            drop_path_rate=0.,
            init_cfg=dict(type='Pretrained', checkpoint=ssl_checkpoint, prefix='backbone.'))),
    neck=dict(
        _delete_=True,
        type='SimplePyramidNeck',
        in_channels=384,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),  # strides 4, 8, 16, 32 (RoI levels)
        num_outs=5,                          # + 64 by max pooling (RPN)
        norm_cfg=dict(type='LN2d', eps=1e-6)))

# 45k iterations, batch 32 = 8 GPUs x 4 images
train_dataloader = dict(batch_size=4, sampler=dict(type='InfiniteSampler', shuffle=True))
max_iters = 45000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[40000, 43333], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.),
    clip_grad=None)
auto_scale_lr = dict(enable=False, base_batch_size=32)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=5000, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
