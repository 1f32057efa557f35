# The UNet-FCN small-DRIVE config with rhoSIM on the UNet's encoder and decoder blocks
# (in the model, so its projectors are trained) and VCReg on the decoder blocks through
# the hook (no change to the model config needed for that part).
# VCReg: alpha = 0.64, beta = 0.04 from the paper's ImageNet grid (alpha in {0.16, 0.32,
# 0.64, 1.28}, beta in {0.01, ..., 0.16}), Eq. 2 (cov_scale='eq2', the default), linear
# warm-up of the weight over 10 iterations. Measured gradient share ||VCReg grad|| /
# ||downstream grad|| over the 4 decoder blocks: 9% after iteration 1, 19-20% at 4-8,
# 12% at 12 (the last decoder block alone: 15-37%). cov_scale='algorithm1' (the scale
# the grid was tuned with, on classification) multiplies the covariance gradient by
# n-1 (n = batch x 64 x 64 positions at the last block) and measured a VCReg gradient
# 7-11x the downstream one at the last decoder block; the former alpha = beta = 1,
# loss_weight 0.01: 0.1-0.3% summed. The hook logs the share once.
_base_ = ['./unet_fcn_small_drive.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 64, 64),
    regularizers=dict(
        sim_enc=dict(type='RhoSIM', preset='paper', layers='backbone.encoder.*', rho=0.2,
                     loss_weight=5e-3),
        # mmseg's UpConvBlock is called as (skip, x): x, the upsampled path, is its input
        sim_dec=dict(type='RhoSIM', preset='paper', layers='backbone.decoder.*', rho=0.2,
                     loss_weight=5e-3,
                     input_index=1)))
custom_hooks = [
    dict(type='RegularizerHook',
         regularizers=dict(vcreg=dict(type='VCReg', layers='backbone.decoder.*',
                                      alpha=0.64, beta=0.04)),
         schedule='linear', warmup_iters=10),
]
