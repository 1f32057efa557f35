# ConvNeXt-B on CUB with rhoSIM (rho=0.2, lambda=5e-3) on every ConvNeXt block
# (3+3+27+3 = 36; the downsampling layers between stages are not blocks and are not
# tapped): the SIM paper's CUB ConvNeXt. Everything else is the baseline's.
# preset='paper' (set explicitly): this config reproduces a run of the paper, so the loss
# follows the paper's text: Eq. 1's sum over blocks, squared standardized MSE,
# lambda=5e-3, projection width K = int(sqrt(C_in)) per block (near the paper's Table 3
# parameter deltas); head form and widths are the preset's (sslreg/regularizers/sim.py,
# PRESETS), so the config sets neither head nor dim. preset='authors_code' is the
# released sim_loss.py instead (lambda per block, mean over blocks, un-squared L2, K=128).
_base_ = ['./convnext-base_8xb8_cub.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 224, 224),  # reads the widths only
    regularizers=dict(
        sim=dict(type='RhoSIM', layers='backbone.stages.*.*', rho=0.2, preset='paper',
                 loss_weight=5e-3)))
