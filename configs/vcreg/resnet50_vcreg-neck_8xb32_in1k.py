# The VCReg paper's "vanilla" form: VCReg only on the classifier's input (the pooled
# feature), as a neck. The hook with no regularizers of its own logs the neck's value.
_base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(neck=dict(_delete_=True, type='VCRegNeck', neck=dict(type='GlobalAveragePooling'),
                       alpha=0.16, beta=0.04, sync=True))
custom_hooks = [dict(type='RegularizerHook')]
