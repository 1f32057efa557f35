# DeCov (Cogswell et al., ICLR 2016, "Reducing Overfitting in Deep Networks by Decorrelating
# Representations"), the VCReg paper's baseline: a covariance penalty on one layer,
# L = 1/2 (||C||_F^2 - ||diag(C)||_2^2) of the batch covariance C (1/N, the paper's) of that
# layer's activations (sslreg/losses/decov.py). Here on ResNet-50's penultimate layer, the
# pooled 2048-d feature (the output of the neck, GlobalAveragePooling, i.e. the classifier's
# input), supervised ImageNet-1k with mmpretrain's stock recipe unchanged.
#
# Weight. L is a sum over the d(d-1) = 4.2 M covariances (no 1/d normalisation, unlike
# VCReg), so lambda depends on the width; neither paper gives one for ResNet-50 / ImageNet.
# Picked: loss_weight = 0.1 (a choice; sweep it before reporting). Measured with this config
# at initialisation on 32 digits at 224 px (data/small/digits_imagenet, one batch): L = 4.15,
# cross-entropy 6.85, so lambda L = 0.42, 6% of it; L grows as the features grow in training.
# Parameter-free and stateless, so it rides on RegularizerHook (no wrapper needed); the
# hook logs loss_decov and, once, its gradient share at the pooled feature.
_base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

custom_hooks = [dict(type='RegularizerHook', regularizers=dict(
    decov=dict(type='DeCov', layers='neck', loss_weight=0.1)))]
