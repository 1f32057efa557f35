# Frozen-backbone detection transfer of an SSL-pretrained ViT-S/16 (the SER paper's
# Table 11 protocol: 45k iterations, batch 32 = 8 GPUs x 4): RetinaNet on COCO with the
# encoder FULLY frozen (no gradient, dropout/drop-path in eval mode even while the
# detector trains; see sslreg/models/frozen_backbone.py) and ViTDet's simple feature
# pyramid (SimplePyramidNeck, strides 8/16/32 from the stride-16 map + max-pooled 64/128,
# as RetinaNet's 5 anchor levels expect). Only the neck and the head train.
#
# The SSL checkpoint: an MMEngine checkpoint of a ViT-S/16 SSL run, either SER's
# (`tools/train.py configs/ser/ser-*_vit-small-p16_*.py`: LateClsViT, patch-only pos_embed,
# CLS token inserted after block 3) or a standard ViT's (mmpretrain's MoCo v3, DINO-style
# VisionTransformer, CLS position in pos_embed). TransferViT (sslreg/models/transfer_vit.py)
# reads which from the checkpoint's pos_embed and computes the function that was trained:
# LateClsViT's forward for SER weights, VisionTransformer's for standard ones. Its encoder
# is the `backbone.*` keys (prefix='backbone.'): the ONLINE encoder of MoCo v3 / Barlow
# Twins and the STUDENT of DINO; the momentum / teacher copies are
# prefix='momentum_encoder.module.0.' / 'teacher.module.0.'. Set it with
#   --cfg-options model.backbone.backbone.init_cfg.checkpoint=/path/to/ssl_epoch_100.pth
# and, for a 12-head ViT-S (SER's and mmpretrain's MoCo v3 configs), also
#   model.backbone.backbone.arch.num_heads=12
# (the weights' shapes do not tell heads apart; when the checkpoint records its training
# config, as MMEngine's do, a different head count or cls_insert_layer is an error).
# The detector checkpoint keeps the same `backbone.*` keys (FrozenBackbone adds no
# wrapper module), so its encoder can be compared with the SSL checkpoint key for key.
#
# Optimizer: the paper fixes the schedule length and batch; the rest is ViTDet's recipe
# (AdamW lr 1e-4, wd 0.1, 250-iteration warm-up, lr x0.1 at 88.9% and 96.3% of training).
# Data: data/coco/ as mmdet reads it (annotations/instances_{train,val}2017.json,
# train2017/, val2017/).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
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
            # ViT-S/16. DINO/DeiT/SER-DINO/SER-Barlow-Twins ViT-S have 6 heads; MoCo v3's
            # (and SER-MoCo-v3's) ViT-S has 12: set num_heads to the checkpoint's.
            arch=dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
            img_size=224,  # the SSL checkpoint's; pos_embed is interpolated per image
            patch_size=16,
            cls_insert_layer=3,  # SER checkpoints: their k; standard ViTs: CLS at the input
            out_type='featmap',  # (N, 384, H/16, W/16), the CLS token dropped
            final_norm=True,
            drop_rate=0.,
            drop_path_rate=0.,
            init_cfg=dict(type='Pretrained', checkpoint=ssl_checkpoint, prefix='backbone.'))),
    neck=dict(
        _delete_=True,
        type='SimplePyramidNeck',
        in_channels=384,
        out_channels=256,
        scale_factors=(2.0, 1.0, 0.5),  # strides 8, 16, 32
        num_outs=5,                     # + 64, 128 by max pooling
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
