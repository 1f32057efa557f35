# ResNet-101 on CIFAR-100, no regularizer: the baseline of the SIM paper's Table 2.
# Backbone: mmpretrain's ResNet_CIFAR (the ImageNet ResNet-101, 3+4+23+3 blocks, with a
# 3x3 stride-1 stem and no max pooling: 32 px inputs, stages at 32/16/8/4 px), as the
# paper's CIFAR ResNets. Recipe: ./_base_/cifar100_recipe.py (App. E.5). Its rhoSIM twin:
# resnet101_cifar100_rhosim.py.
_base_ = ['mmpretrain::_base_/models/resnet101_cifar.py', './_base_/cifar100_recipe.py']

model = dict(head=dict(num_classes=100))
