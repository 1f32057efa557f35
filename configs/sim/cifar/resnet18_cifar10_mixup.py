# ResNet-18 on CIFAR-10 with Mixup, no rhoSIM: a baseline of the SIM paper's Table 2
# "regularization strategies" (rhoSIM combined with label smoothing, Mixup, CutMix). The
# paper's strength for it is not stated in the material sslreg was built from; used
# here: mmpretrain's Mixup batch augment (model.train_cfg.augments; the data
# preprocessor mixes images and one-hot labels), alpha=1.0 as mmpretrain's own CIFAR
# Mixup config (resnet50_8xb16-mixup_cifar10.py) and Zhang et al.'s CIFAR setting; the
# head's cross-entropy takes the soft labels (use_soft=True).
# Everything else is resnet18_cifar10.py's.
# With rhoSIM: resnet18_cifar10_mixup_rhosim.py.
_base_ = ['./resnet18_cifar10.py']

model = dict(head=dict(loss=dict(use_soft=True)),  # cross-entropy on the mixed labels
             train_cfg=dict(augments=dict(type='Mixup', alpha=1.0)))
