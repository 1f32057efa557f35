# UNet-S5-D16 + PSPNet (PPM) head on DRIVE (64x64 crops, 40k iterations, batch 16 =
# 4 GPUs x 4, mDice), mmseg's stock recipe unchanged but for VCReg (fast form: the forward
# is untouched, the gradient is added in backward) on the outputs of every UNet encoder
# and decoder block, through the hook: no change to the model config.
# alpha/beta: the middle of the grid of configs/vcreg/resnet50_vcreg_8xb32_in1k.py
# (alpha, beta in {0.01, 0.04, 0.16, 0.64}); sweep them before reporting numbers.
_base_ = ['mmseg::unet/unet-s5-d16_pspnet_4xb4-40k_drive-64x64.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

custom_hooks = [
    dict(type='RegularizerHook',
         regularizers=dict(vcreg=dict(
             type='VCReg', layers=['backbone.encoder.*', 'backbone.decoder.*'],
             alpha=0.16, beta=0.04, mode='fast',
             sync=True))),  # statistics over all GPUs (one GPU holds only 4 crops)
]
