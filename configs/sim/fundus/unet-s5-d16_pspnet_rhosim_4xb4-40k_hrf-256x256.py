# UNet-S5-D16 + PSPNet (PPM) head on HRF (256x256 crops, 40k iterations, batch 16 =
# 4 GPUs x 4), mmseg's stock recipe, with rhoSIM (rho=0.2, lambda=5e-3, the SIM
# paper's setting) on every UNet encoder block (the 5 conv stages; the max-pooling ones
# are resampled) and every decoder block (the 4 UpConvBlocks).
# Data: data/HRF/ as mmseg's dataset converters write it (images/{training,
# validation}, annotations/{training,validation}); see mmseg's dataset docs.
# Metric: the paper's "Dice" (~80) is the vessel-class Dice, logged as Dice.vessel
# (VesselDiceMetric, below) beside mmseg's stock mDice, the mean over background and
# vessel (~88-90), which stays the same number as in the stock config.
# preset='paper' (set explicitly): this config reproduces a run of the paper, so the loss
# follows the paper's text: Eq. 1's sum over blocks, squared standardized MSE,
# lambda=5e-3, projection width K = int(sqrt(C_in)) per block; head form and widths are
# the preset's (sslreg/regularizers/sim.py, PRESETS), so the config sets neither head
# nor dim. preset='authors_code' is the released sim_loss.py instead
# (lambda per block, mean over blocks, un-squared L2, K=128).
_base_ = ['mmseg::unet/unet-s5-d16_pspnet_4xb4-40k_hrf-256x256.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 64, 64),  # reads the blocks' widths only
    regularizers=dict(
        sim_enc=dict(type='RhoSIM', layers='backbone.encoder.*', rho=0.2, preset='paper',
                     loss_weight=5e-3),
        # mmseg's UpConvBlock is called as (skip, x): x, the upsampled path, is its input
        sim_dec=dict(type='RhoSIM', layers='backbone.decoder.*', rho=0.2, preset='paper',
                     loss_weight=5e-3, input_index=1)))

# mmseg's IoUMetric (mDice unchanged) + Dice.vessel, the vessel-class Dice the paper reports
val_evaluator = dict(type='VesselDiceMetric', iou_metrics=['mDice'])
test_evaluator = val_evaluator
