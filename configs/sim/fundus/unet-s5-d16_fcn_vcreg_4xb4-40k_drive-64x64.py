# UNet-S5-D16 + FCN head on DRIVE (64x64 crops, 40k iterations, batch 16 =
# 4 GPUs x 4, mDice), mmseg's stock recipe unchanged but for VCReg (fast form: the forward
# is untouched, the gradient is added in backward) on the outputs of every UNet encoder
# and decoder block, through the hook: no change to the model config.
# VCReg weights from the VCReg paper's grids (arXiv:2306.13292; alpha in {0.16, 0.32, 0.64,
# 1.28}, beta in {0.01, 0.02, 0.04, 0.08, 0.16} for ImageNet/long-tail/ConvNeXt-Atto;
# alpha in {1, 3, 5}, beta in {0.1, 0.3, 0.5} for video; the paper has no segmentation):
# alpha = 0.16, beta = 0.04, a choice; sweep before reporting numbers. Eq. 2
# (cov_scale='eq2', the default), not the paper's Algorithm 1 scale: on the small DRIVE
# set (FCN head, 4 crops, iteration 1) Eq. 2 measured a VCReg gradient share of 4.4% over
# the 9 blocks (33% at the last decoder block), while 'algorithm1' (covariance gradient
# n-1 times larger, n = 4 x 64 x 64 positions at the outer blocks) gave a VCReg gradient
# 57x the downstream one at the last decoder block. demean=False: the paper's mean-removal
# layer changes the forward and keeps running means, which needs the RegularizedModel
# wrapper (RegularizerHook refuses it). delta=None: the paper gives no smooth-L1 delta.
_base_ = ['mmseg::unet/unet-s5-d16_fcn_4xb4-40k_drive-64x64.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

custom_hooks = [
    dict(type='RegularizerHook',
         regularizers=dict(vcreg=dict(
             type='VCReg', layers=['backbone.encoder.*', 'backbone.decoder.*'],
             alpha=0.16, beta=0.04, mode='fast', cov_scale='eq2', delta=None,
             # statistics over all GPUs: one GPU holds only 4 crops, and at the innermost
             # blocks (4x4 maps, 1024 channels) 64 positions per GPU are fewer than d
             sync=True))),
]

# mmseg's IoUMetric (mDice unchanged) + Dice.vessel, the vessel-class Dice the paper reports
val_evaluator = dict(type='VesselDiceMetric', iou_metrics=['mDice'])
test_evaluator = val_evaluator
