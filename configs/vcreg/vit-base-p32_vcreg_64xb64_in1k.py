# VCReg on the output of every transformer block of ViT-B/32 (the 12 encoder layers, tokens
# (N, 50, 768): N x 50 samples of 768 channels, [CLS] included), supervised ImageNet-1k;
# mmpretrain's stock recipe (vit-base-p32_64xb64_in1k: AdamW lr 3e-3, wd 0.3, batch 4096,
# 300 epochs, Mixup 0.2, grad clip 1.0) unchanged but for the model wrapper. Placement as
# in convnext-tiny_vcreg_32xb128_in1k.py: every block of the trunk, nothing in the patch
# embedding or the head (Zhu et al., arXiv:2306.13292: VCReg on intermediate
# representations).
#
# Weights. The paper's grids (App. C.1): alpha in {0.16, 0.32, 0.64, 1.28}, beta in
# {0.01, 0.02, 0.04, 0.08, 0.16} (ImageNet, long-tail, ConvNeXt-Atto); alpha in {1, 3, 5},
# beta in {0.1, 0.3, 0.5} (video). Picked: alpha = 0.16, beta = 0.04 (first alpha, middle
# beta; a choice, sweep the grid before reporting numbers).
# As in resnet50_vcreg_8xb32_in1k.py (see its header for the reasons): cov_scale=
# 'algorithm1' (the grids were tuned with the paper's Algorithm 1), demean=True (App. A's
# mean-removal layer before VCReg; running mean at eval, saved in checkpoints; needs the
# RegularizedModel wrapper), sync=False (per-GPU statistics as Algorithm 1), delta=None
# (the paper gives no smooth-L1 delta). RegularizerHook logs VCReg's gradient share once.
# Baseline: mmpretrain's own vision_transformer/vit-base-p32_64xb64_in1k.py.
_base_ = ['mmpretrain::vision_transformer/vit-base-p32_64xb64_in1k.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 224, 224),
    regularizers=dict(vcreg=dict(
        type='VCReg', layers='backbone.layers.*', alpha=0.16, beta=0.04, delta=None,
        mode='fast', cov_scale='algorithm1', demean=True, sync=False)))
custom_hooks = [dict(type='RegularizerHook')]
