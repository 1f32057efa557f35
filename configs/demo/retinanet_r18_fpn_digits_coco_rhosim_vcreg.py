# RetinaNet R18-FPN on digits-COCO with rhoSIM on every backbone block (in the model) and
# VCReg on the FPN outputs through the hook.
_base_ = ['./retinanet_r18_fpn_digits_coco.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 128, 128),
    regularizers=dict(
        sim=dict(type='RhoSIM', layers='backbone.layer*.*', rho=0.2, loss_weight=5e-3)))
custom_hooks = [
    dict(type='RegularizerHook',
         regularizers=dict(vcreg=dict(type='VCReg', layers='neck.fpn_convs.*',
                                      loss_weight=0.01))),
]
