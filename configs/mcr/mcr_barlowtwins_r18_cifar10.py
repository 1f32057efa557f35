# MCR on Barlow Twins, ResNet-18, cifar10: mcr_simclr_r18_cifar10.py with BarlowTwins as the
# wrapped algorithm (mmpretrain's; projector 2048-2048-2048 as usual on CIFAR-sized data,
# not from the MCR paper).
_base_ = ['./mcr_simclr_r18_cifar10.py']

model = dict(
    algorithm=dict(
        type='BarlowTwins',
        neck=dict(hid_channels=2048, out_channels=2048, num_layers=3, with_last_bn=False,
                  with_last_bn_affine=False),
        head=dict(_delete_=True, type='LatentCrossCorrelationHead', in_channels=2048,
                  loss=dict(type='CrossCorrelationLoss'))),
    comp_mod=dict(out_channels=2048))
