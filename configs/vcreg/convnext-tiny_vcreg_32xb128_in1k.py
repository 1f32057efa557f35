# VCReg on the output of every ConvNeXt block of ConvNeXt-T (not the downsampling layers),
# supervised ImageNet-1k; mmpretrain's stock recipe unchanged but for the hook.
# alpha/beta: see resnet50_vcreg_8xb32_in1k.py for the grid to sweep.
_base_ = ['mmpretrain::convnext/convnext-tiny_32xb128_in1k.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),  # as in the stock config
    dict(type='RegularizerHook',
         regularizers=dict(vcreg=dict(
             type='VCReg', layers='backbone.stages.*.*', alpha=0.16, beta=0.04,
             mode='fast', sync=True))),
]
