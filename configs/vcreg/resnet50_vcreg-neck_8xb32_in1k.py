# The VCReg paper's "vanilla" form: VCReg only on the classifier's input (the pooled
# feature), as a neck. The hook with no regularizers of its own logs the neck's value and,
# once, its gradient share.
#
# Weights: the paper's grids (arXiv:2306.13292) alpha in {0.16, 0.32, 0.64, 1.28}, beta in
# {0.01, 0.02, 0.04, 0.08, 0.16} (ImageNet, long-tail, ConvNeXt-Atto); alpha in {1, 3, 5},
# beta in {0.1, 0.3, 0.5} (video). Picked: alpha = 0.16, beta = 0.04 (a choice; sweep).
# cov_scale='algorithm1' (the grids were tuned with Algorithm 1, whose covariance gradient
# is n-1 = 31 times Eq. 2's here: n = the 32 pooled features per GPU), demean=True (App. A's
# mean-removal layer; running mean at eval, a buffer of the neck, so it stays in a
# stripped checkpoint; in_channels=2048 declares its width), sync=False (per-GPU, as
# Algorithm 1). No delta: smooth-L1 is for intermediate layers (Sec. 3.2) and its delta
# is not given.
_base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(neck=dict(_delete_=True, type='VCRegNeck', neck=dict(type='GlobalAveragePooling'),
                       in_channels=2048, alpha=0.16, beta=0.04, cov_scale='algorithm1',
                       demean=True, sync=False))
custom_hooks = [dict(type='RegularizerHook')]
