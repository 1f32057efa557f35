# SER on DINO sized for a CPU (digits, 32 px, 4-block ViT); data, validation and schedule
# of ser-mocov3_vit-tiny-p8_digits.py (its uncropped equivariance views,
# equiv_crop='none'). lambda 0.3, tau 0.4 as SER's DINO run (DINO's own tau in the
# paper); a small head (1024 prototypes) for the small data.
_base_ = './ser-mocov3_vit-tiny-p8_digits.py'

model = dict(
    _delete_=True,
    type='SERDINO',
    backbone=dict(
        type='LateClsViT',
        arch=dict(embed_dims=96, num_layers=4, num_heads=3, feedforward_channels=192),
        img_size=32,
        patch_size=8,
        cls_insert_layer=2),
    head=dict(out_channels=1024, hidden_channels=256, bottleneck_channels=64, num_layers=3,
              norm_last_layer=False),
    base_momentum=0.01,
    teacher_temp=0.04,
    ser=dict(lambda_equiv=0.3, tau=0.4, equiv_ratio=0.25, proj_channels=128))
optim_wrapper = dict(clip_grad=dict(max_norm=3.0))
