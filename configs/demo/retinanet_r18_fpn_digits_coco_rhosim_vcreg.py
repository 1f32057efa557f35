# RetinaNet R18-FPN on digits-COCO with rhoSIM on every backbone block (in the model) and
# VCReg on the FPN outputs through the hook.
# VCReg: alpha = 0.16, beta = 0.01 (the paper's ImageNet grid, alpha in {0.16, ..., 1.28},
# beta in {0.01, ..., 0.16}, its smallest values), cov_scale='algorithm1', scaled by
# loss_weight 0.1: the detector's gradient at the FPN outputs is small at the start
# (|g| ~ 1e-3), and the grid values at weight 1 gave a VCReg gradient 2-17x the
# downstream one (alpha = 0.64: 7.8x under Eq. 2, 16.7x under Algorithm 1). Measured
# share with these weights: 33-50% over iterations 1-8 (the former alpha = beta = 1,
# loss_weight 0.01, Eq. 2: 12%). The paper has no detection experiments.
_base_ = ['./retinanet_r18_fpn_digits_coco.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 128, 128),
    regularizers=dict(
        sim=dict(type='RhoSIM', preset='paper', layers='backbone.layer*.*', rho=0.2,
                 loss_weight=5e-3)))
custom_hooks = [
    dict(type='RegularizerHook',
         regularizers=dict(vcreg=dict(type='VCReg', layers='neck.fpn_convs.*',
                                      alpha=0.16, beta=0.01, cov_scale='algorithm1',
                                      loss_weight=0.1))),
]
