# SimSiam on the digits folder with rhoSIM on every backbone block (both views count) and
# VCReg on the blocks through the hook.
# VCReg: alpha = 0.16, beta = 0.01 from the paper's ImageNet grid (alpha in {0.16, 0.32,
# 0.64, 1.28}, beta in {0.01, ..., 0.16}) with cov_scale='algorithm1' (the grid was tuned
# with Algorithm 1). Measured gradient share at the 16 regularized outputs (8 blocks x 2
# views): 30% after iteration 1, 7-13% at 2-5, 1.6% at 8 (0.64/0.04 gave 83% at 1; the
# former alpha = beta = 1, loss_weight 0.01, Eq. 2: 0.08%). The hook logs it once.
_base_ = ['./simsiam_r18_digits.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 32, 32),
    regularizers=dict(
        # at 32 px layer4's maps are 1x1: no token positions to sample (rhoSIM refuses)
        # preset='paper': the SIM paper's Eq. 1/4 (docs/fidelity.md)
        sim=dict(type='RhoSIM', layers=['backbone.layer1.*', 'backbone.layer2.*',
                                        'backbone.layer3.*'], rho=0.2, loss_weight=5e-3,
                 preset='paper')))
custom_hooks = [
    dict(type='SimSiamHook', priority='HIGH', fix_pred_lr=True, lr={{_base_.lr}}),
    dict(type='RegularizerHook',
         regularizers=dict(vcreg=dict(type='VCReg', layers='backbone.layer*.*',
                                      alpha=0.16, beta=0.01, cov_scale='algorithm1'))),
]
