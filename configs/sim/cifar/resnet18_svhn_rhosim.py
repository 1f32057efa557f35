# ResNet-18 on SVHN with rhoSIM on every residual block (8 basic blocks,
# backbone.layer*.*; the strided first blocks of layer2-4 are handled by resampling
# their input onto their output grid), the SIM paper's Table 2 setting: rho=0.2,
# lambda=5e-3. Everything else is resnet18_svhn.py's.
# preset='paper' (set explicitly): this config reproduces a run of the paper, so the loss
# follows the paper's text: Eq. 1's sum over blocks, squared standardized MSE,
# lambda=5e-3, projection width K = int(sqrt(C_in)) per block; head form and widths are
# the preset's (sslreg/regularizers/sim.py, PRESETS), so the config sets neither head
# nor dim. preset='authors_code' is the released sim_loss.py instead (lambda per block,
# mean over blocks, un-squared L2, K=128).
_base_ = ['./resnet18_svhn.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 32, 32),  # the training size: layer4's maps are 4x4 (16 positions)
    regularizers=dict(
        sim=dict(type='RhoSIM', layers='backbone.layer*.*', rho=0.2, preset='paper',
                 loss_weight=5e-3)))
