# VICReg (Bardes, Ponce, LeCun, ICLR 2022), the SSL method VCReg derives from, as sslreg's
# `VICReg` algorithm (sslreg/models/vicreg.py; loss: sslreg/losses/vicreg.py, its variance
# and covariance terms VCReg's statistics with VICReg's scaling): the baseline of the
# "VICReg + VCReg" row of the VCReg paper's Table 4 (App. C.5).
#
# The reference setting (facebookresearch/vicreg): ResNet-50 (zero-init residuals), expander
# 8192-8192-8192 (Linear-BN-ReLU twice, then Linear; no bias before a BN, none on the last
# layer), sim/std/cov coefficients 25/25/1, gamma 1, eps 1e-4, the code's scaling (MSE over
# all entries, variance halved per branch: docs/fidelity.md), embeddings gathered across GPUs
# for the variance/covariance; LARS, base lr 0.2 x batch/256 = 1.6 at batch 2048 (8 x 256),
# weight decay 1e-6, biases and norm layers excluded from decay and LARS adaptation, 10
# warm-up epochs then cosine to 0.001 x lr. Data: the BYOL/Barlow Twins augmentations of
# mmpretrain's barlowtwins_resnet50_8xb256-coslr-300e_in1k.py (VICReg's own: view 1 blur
# p=1, view 2 blur p=0.1 + solarize p=0.2), whose data part this config inherits.
# Epochs: 100 (a choice: VICReg's ablation length; its paper's main runs are 1000, the
# VCReg paper's SSL schedule is not given in what we have) -- set train_cfg.max_epochs and
# the cosine's T_max / end together.
_base_ = ['mmpretrain::barlowtwins/barlowtwins_resnet50_8xb256-coslr-300e_in1k.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='VICReg',
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=True),
    neck=dict(type='NonLinearNeck', in_channels=2048, hid_channels=8192, out_channels=8192,
              num_layers=3, with_bias=False, with_last_bn=False, with_last_bn_affine=False,
              with_last_bias=False, with_avg_pool=True, norm_cfg=dict(type='SyncBN')),
    sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4, scaling='code', gather=True)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='LARS', lr=1.6, momentum=0.9, weight_decay=1e-6),
    paramwise_cfg=dict(custom_keys={
        'bn': dict(decay_mult=0, lars_exclude=True),
        'bias': dict(decay_mult=0, lars_exclude=True),
        'downsample.1': dict(decay_mult=0, lars_exclude=True),  # BN of the shortcuts
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=1.6e-3, by_epoch=True, begin=10,
         end=100, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100)
auto_scale_lr = dict(base_batch_size=2048)
