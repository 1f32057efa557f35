# The VCReg paper's hierarchical-classification probe (Table 5, App. C.3): a linear
# classifier on the frozen features of a network pre-trained on CIFAR-100's 20
# superclasses, trained and tested on the 100 subclasses (fine labels): 100 epochs, AdamW
# lr 0.016, cosine, weight decay 0.05, batch 256, all labels.
#
#   python tools/linear_eval.py \
#       configs/vcreg/hierarchical/convnext-atto_vcreg_1xb256-100e_cifar100-coarse.py \
#       work_dirs/convnext-atto_vcreg_1xb256-100e_cifar100-coarse/epoch_100.pth \
#       --protocol-config configs/eval/vcreg/vcreg_hierarchical_linear_100e.py
#
# Features: the backbone's output (ConvNeXt: globally pooled, then its final LayerNorm,
# 320-d for Atto), computed once from the 32 px test-time images (no augmentation), not
# standardized (sslreg's choices where the paper is not specific; no warm-up).
# Digits twin (tests): vcreg_hierarchical_linear_100e_digits.py.
_base_ = ['../_base_/frozen_linear_50e.py']
protocol = dict(
    name='vcreg_hierarchical_linear_100e',
    paper='VCReg (Zhu et al., arXiv:2306.13292) Table 5: linear probe on the 100 CIFAR-100 '
          'subclasses after superclass pre-training',
    dataset='CIFAR-100 (100 fine classes)',
    labels='100%',
    optimizer='adamw',
    epochs=100,
    warmup_epochs=0,
    lr=0.016,
    weight_decay=0.05,
    batch_size=256,
    standardize=False)
linear_eval = dict(
    train=dict(type='CIFAR100', data_root='data/cifar100', split='train'),
    val=dict(type='CIFAR100', data_root='data/cifar100', split='test'),
    size=32)
