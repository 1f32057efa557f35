# Swin-B on CUB with rhoSIM (rho=0.2, lambda=5e-3) on every Swin block (2+2+18+2 = 24;
# tokens (N, L, C); the patch-merging layers between stages are not tapped). Everything
# else is the baseline's.
# preset='paper' (set explicitly): this config reproduces a run of the paper, so the loss
# follows the paper's text: Eq. 1's sum over blocks, squared standardized MSE,
# lambda=5e-3, projection width K = int(sqrt(C_in)) per block (near the paper's Table 3
# parameter deltas); head form and widths are the preset's (sslreg/regularizers/sim.py,
# PRESETS), so the config sets neither head nor dim. preset='authors_code' is the
# released sim_loss.py instead (lambda per block, mean over blocks, un-squared L2, K=128).
_base_ = ['./swin-base_8xb8_cub-384px.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    # window attention at window 12 needs the size the config is built for
    probe_input=(1, 3, 384, 384),
    regularizers=dict(
        sim=dict(type='RhoSIM', layers='backbone.stages.*.blocks.*', rho=0.2, preset='paper',
                 loss_weight=5e-3)))
