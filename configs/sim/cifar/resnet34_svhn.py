# ResNet-34 on SVHN, no regularizer: the baseline of the SIM paper's Table 2.
# Backbone: mmpretrain's ResNet_CIFAR (the ImageNet ResNet-34, 3+4+6+3 blocks, with a
# 3x3 stride-1 stem and no max pooling: 32 px inputs, stages at 32/16/8/4 px), as the
# paper's CIFAR ResNets. Recipe: ./_base_/svhn_recipe.py (App. E.5). Its rhoSIM twin:
# resnet34_svhn_rhosim.py.
_base_ = ['mmpretrain::_base_/models/resnet34_cifar.py', './_base_/svhn_recipe.py']
