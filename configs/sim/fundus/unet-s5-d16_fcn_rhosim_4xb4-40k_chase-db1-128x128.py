# UNet-S5-D16 + FCN head on CHASE_DB1 (128x128 crops, 40k iterations, batch 16 =
# 4 GPUs x 4, mDice), mmseg's stock recipe, with rhoSIM (rho=0.2, lambda=5e-3, the SIM
# paper's setting) on every UNet encoder block (the 5 conv stages; the max-pooling ones
# are resampled) and every decoder block (the 4 UpConvBlocks).
# Data: data/CHASE_DB1/ as mmseg's dataset converters write it (images/{training,
# validation}, annotations/{training,validation}); see mmseg's dataset docs.
_base_ = ['mmseg::unet/unet-s5-d16_fcn_4xb4-40k_chase-db1-128x128.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 64, 64),  # reads the blocks' widths only
    regularizers=dict(
        sim_enc=dict(type='RhoSIM', layers='backbone.encoder.*', rho=0.2, loss_weight=5e-3),
        # mmseg's UpConvBlock is called as (skip, x): x, the upsampled path, is its input
        sim_dec=dict(type='RhoSIM', layers='backbone.decoder.*', rho=0.2, loss_weight=5e-3,
                     input_index=1)))
