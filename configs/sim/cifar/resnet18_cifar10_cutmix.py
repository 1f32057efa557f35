# ResNet-18 on CIFAR-10 with CutMix, no rhoSIM: a baseline of the SIM paper's Table 2
# "regularization strategies" (rhoSIM combined with label smoothing, Mixup, CutMix). The
# paper's strength for it is not stated in the material sslreg was built from; used
# here: mmpretrain's CutMix batch augment (model.train_cfg.augments), alpha=1.0 on every
# batch as mmpretrain's CIFAR CutMix model base (resnet50_cifar_cutmix.py, alpha 1.0,
# prob 1.0) and Yun et al.'s CIFAR setting; the head's cross-entropy takes the soft
# labels (use_soft=True).
# Everything else is resnet18_cifar10.py's.
# With rhoSIM: resnet18_cifar10_cutmix_rhosim.py.
_base_ = ['./resnet18_cifar10.py']

model = dict(head=dict(loss=dict(use_soft=True)),  # cross-entropy on the mixed labels
             train_cfg=dict(augments=dict(type='CutMix', alpha=1.0)))
