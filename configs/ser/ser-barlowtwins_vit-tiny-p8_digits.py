# SER on Barlow Twins sized for a CPU (digits, 32 px, 4-block ViT); data, validation and
# schedule of ser-mocov3_vit-tiny-p8_digits.py (its uncropped equivariance views,
# equiv_crop='none'). tau 0.2: the paper shares one tau between MoCo v3 and Barlow Twins.
_base_ = './ser-mocov3_vit-tiny-p8_digits.py'

model = dict(
    _delete_=True,
    type='SERBarlowTwins',
    backbone=dict(
        type='LateClsViT',
        arch=dict(embed_dims=96, num_layers=4, num_heads=3, feedforward_channels=192),
        img_size=32,
        patch_size=8,
        cls_insert_layer=2),
    neck=dict(type='NonLinearNeck', in_channels=96, hid_channels=256, out_channels=256,
              num_layers=3, with_last_bn=False, with_last_bn_affine=False,
              with_avg_pool=False, norm_cfg=dict(type='BN1d')),
    head=dict(type='LatentCrossCorrelationHead', in_channels=256,
              loss=dict(type='CrossCorrelationLoss')),
    ser=dict(lambda_equiv=1.0, tau=0.2, equiv_ratio=0.25, proj_channels=128))
