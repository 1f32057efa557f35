# VICReg + VCReg on every residual block of the backbone (both views count): the
# "VICReg + VCReg" row of the VCReg paper's Table 4 (App. C.5); the VICReg setting is
# vicreg_resnet50_8xb256-coslr-100e_in1k.py's. Evaluated by the transfer protocol.
#
# Weights. The paper's grid (App. C.1): alpha in {0.16, 0.32, 0.64, 1.28}, beta in
# {0.01, 0.02, 0.04, 0.08, 0.16}; picked alpha = 0.16, beta = 0.04 (a choice: the SSL rows'
# values are not given; sweep). cov_scale='algorithm1', demean=True, sync=False,
# delta=None: see configs/vcreg/resnet50_vcreg_8xb32_in1k.py for the reasons.
_base_ = ['./vicreg_resnet50_8xb256-coslr-100e_in1k.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 224, 224),
    regularizers=dict(vcreg=dict(
        type='VCReg', layers='backbone.layer*.*', alpha=0.16, beta=0.04, delta=None,
        mode='fast', cov_scale='algorithm1', demean=True, sync=False)))
custom_hooks = [dict(type='RegularizerHook')]
