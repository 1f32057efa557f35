# ResNet-18 on CIFAR-10 with label smoothing, no rhoSIM: a baseline of the SIM paper's
# Table 2 "regularization strategies" (rhoSIM combined with label smoothing, Mixup,
# CutMix). The paper's strength for it is not stated in the material sslreg was built
# from; used here: mmpretrain's LabelSmoothLoss, label_smooth_val=0.1 (the value of
# every mmpretrain config that uses it), mode 'original': (1 - 0.1) one-hot + 0.1 /
# num_classes.
# Everything else is resnet18_cifar10.py's.
# With rhoSIM: resnet18_cifar10_labelsmooth_rhosim.py.
_base_ = ['./resnet18_cifar10.py']

model = dict(head=dict(loss=dict(_delete_=True, type='LabelSmoothLoss', label_smooth_val=0.1,
                                  num_classes=10, loss_weight=1.0)))
