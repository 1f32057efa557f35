# ConvNeXt-Atto + VCReg on every block, CIFAR-100's 20 superclasses: the VCReg row of the
# paper's Table 5 (weights, options: _base_/convnext-atto_adamw-100e_cifar100-coarse.py).
# The probe loads the wrapped checkpoint (the demean layers' running means are part of the
# trained network; tools/linear_eval.py loads them with the backbone):
#   python tools/linear_eval.py THIS_CONFIG work_dirs/.../epoch_100.pth \
#       --protocol-config configs/eval/vcreg/vcreg_hierarchical_linear_100e.py
_base_ = ['./convnext-atto_1xb256-100e_cifar100-coarse.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 32, 32),
    regularizers=dict(vcreg={{_base_.vcreg}}))
custom_hooks = [dict(type='RegularizerHook')]
