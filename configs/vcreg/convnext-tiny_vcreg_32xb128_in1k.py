# VCReg on the output of every ConvNeXt block of ConvNeXt-T (not the downsampling layers),
# supervised ImageNet-1k; mmpretrain's stock recipe unchanged but for the model wrapper.
#
# Weights. The paper's grids (arXiv:2306.13292): alpha in {0.16, 0.32, 0.64, 1.28}, beta in
# {0.01, 0.02, 0.04, 0.08, 0.16} (ImageNet, long-tail, ConvNeXt-Atto); alpha in {1, 3, 5},
# beta in {0.1, 0.3, 0.5} (video). Picked: alpha = 0.16, beta = 0.04 (first alpha, middle
# beta; a choice, sweep the grid before reporting numbers).
# As in resnet50_vcreg_8xb32_in1k.py (see its header for the reasons): cov_scale=
# 'algorithm1' (the grids were tuned with the paper's Algorithm 1), demean=True (App. A's
# mean-removal layer before VCReg; running mean at eval, saved in checkpoints; needs the
# RegularizedModel wrapper), sync=False (per-GPU statistics as Algorithm 1; sync=True
# would make the covariance gradient world_size times stronger), delta=None (the paper
# gives no smooth-L1 delta). RegularizerHook logs VCReg's gradient share once.
_base_ = ['mmpretrain::convnext/convnext-tiny_32xb128_in1k.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 224, 224),
    regularizers=dict(vcreg=dict(
        type='VCReg', layers='backbone.stages.*.*', alpha=0.16, beta=0.04, delta=None,
        mode='fast', cov_scale='algorithm1', demean=True, sync=False)))
custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),  # as in the stock config
    dict(type='RegularizerHook'),
]
