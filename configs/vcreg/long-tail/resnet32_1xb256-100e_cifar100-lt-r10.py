# CIFAR-100-LT, imbalance factor 10 (n_max / n_min), ResNet-32, no regularizer: the baseline
# row of the VCReg paper's Table 3 (recipe: _base_/resnet32_adamw-100e_lt.py).
_base_ = ['./_base_/cifar100-lt.py']

train_dataloader = dict(dataset=dict(imbalance_factor=10))
