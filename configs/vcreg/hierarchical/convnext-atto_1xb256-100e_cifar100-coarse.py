# ConvNeXt-Atto on CIFAR-100's 20 superclasses, no regularizer: the baseline of the VCReg
# paper's Table 5 (recipe: _base_/convnext-atto_adamw-100e_cifar100-coarse.py). Then:
#   python tools/linear_eval.py THIS_CONFIG work_dirs/.../epoch_100.pth \
#       --protocol-config configs/eval/vcreg/vcreg_hierarchical_linear_100e.py
_base_ = ['./_base_/convnext-atto_adamw-100e_cifar100-coarse.py']
