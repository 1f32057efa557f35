# SimSiam on the digits folder with rhoSIM on every backbone block (both views count) and
# VCReg on the blocks through the hook.
_base_ = ['./simsiam_r18_digits.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 32, 32),
    regularizers=dict(
        # at 32 px layer4's maps are 1x1: no token positions to sample (rhoSIM refuses)
        sim=dict(type='RhoSIM', layers=['backbone.layer1.*', 'backbone.layer2.*',
                                        'backbone.layer3.*'], rho=0.2, loss_weight=5e-3)))
custom_hooks = [
    dict(type='SimSiamHook', priority='HIGH', fix_pred_lr=True, lr={{_base_.lr}}),
    dict(type='RegularizerHook',
         regularizers=dict(vcreg=dict(type='VCReg', layers='backbone.layer*.*',
                                      loss_weight=0.01))),
]
