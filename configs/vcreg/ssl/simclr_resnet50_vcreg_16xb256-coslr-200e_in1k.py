# SimCLR (mmpretrain's own algorithm and recipe: ResNet-50, 2-layer projection 2048-2048-128,
# temperature 0.1, LARS lr 4.8, batch 4096 = 16 x 256, 200 epochs) + VCReg on every
# residual block of the backbone: the "SimCLR + VCReg" row of the VCReg paper's Table 4
# (App. C.5). Both views' block outputs are regularized (the backbone runs once per view,
# each call counts). Baseline: mmpretrain's simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py.
# Evaluated by the transfer protocol (tools/transfer_eval.py).
#
# Weights. The paper's grid (App. C.1): alpha in {0.16, 0.32, 0.64, 1.28}, beta in
# {0.01, 0.02, 0.04, 0.08, 0.16}; picked alpha = 0.16, beta = 0.04 (a choice: the SSL rows'
# values are not given; sweep). cov_scale='algorithm1', demean=True, sync=False,
# delta=None: see configs/vcreg/resnet50_vcreg_8xb32_in1k.py for the reasons.
_base_ = ['mmpretrain::simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 224, 224),
    regularizers=dict(vcreg=dict(
        type='VCReg', layers='backbone.layer*.*', alpha=0.16, beta=0.04, delta=None,
        mode='fast', cov_scale='algorithm1', demean=True, sync=False)))
custom_hooks = [dict(type='RegularizerHook')]
