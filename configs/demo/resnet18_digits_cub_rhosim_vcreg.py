# The demo: ResNet-18 on the digits-CUB data with rhoSIM (rho=0.2, lambda=5e-3, the SIM
# paper's setting) on the blocks whose maps are larger than 1x1 at 32 px, and VCReg (fast
# form) on every residual block. Twin of
# resnet18_digits_cub_baseline.py, which it inherits unchanged but for the model wrapper.
_base_ = ['./resnet18_digits_cub_baseline.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 32, 32),
    regularizers=dict(
        # at 32 px layer4's maps are 1x1: no token positions to sample (rhoSIM refuses)
        sim=dict(type='RhoSIM', layers=['backbone.layer1.*', 'backbone.layer2.*',
                                        'backbone.layer3.*'], rho=0.2, loss_weight=5e-3),
        vcreg=dict(type='VCReg', layers='backbone.layer*.*', alpha=1.0, beta=1.0,
                   loss_weight=0.01)))
