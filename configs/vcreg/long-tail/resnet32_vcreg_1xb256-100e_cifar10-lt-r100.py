# CIFAR-10-LT, imbalance factor 100, ResNet-32 + VCReg on every basic block: the VCReg row of
# the paper's Table 3 (weights and options: _base_/resnet32_adamw-100e_lt.py).
_base_ = ['./resnet32_1xb256-100e_cifar10-lt-r100.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 32, 32),
    regularizers=dict(vcreg={{_base_.vcreg}}))
custom_hooks = [dict(type='RegularizerHook')]
