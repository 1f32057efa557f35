# The UNet-FCN small-DRIVE config with rhoSIM on the UNet's encoder and decoder blocks
# (in the model, so its projectors are trained) and VCReg on the decoder blocks through
# the hook (no change to the model config needed for that part).
_base_ = ['./unet_fcn_small_drive.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 64, 64),
    regularizers=dict(
        sim_enc=dict(type='RhoSIM', layers='backbone.encoder.*', rho=0.2, loss_weight=5e-3),
        # mmseg's UpConvBlock is called as (skip, x): x, the upsampled path, is its input
        sim_dec=dict(type='RhoSIM', layers='backbone.decoder.*', rho=0.2, loss_weight=5e-3,
                     input_index=1)))
custom_hooks = [
    dict(type='RegularizerHook',
         regularizers=dict(vcreg=dict(type='VCReg', layers='backbone.decoder.*',
                                      loss_weight=0.01)),
         schedule='linear', warmup_iters=10),
]
