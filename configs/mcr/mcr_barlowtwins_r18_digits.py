# MCR on Barlow Twins with a ResNet-18 on the digits folder at 32 px (CPU-sized): the
# SimCLR digits recipe with BarlowTwins as the wrapped algorithm (mmpretrain's, unchanged).
_base_ = ['./mcr_simclr_r18_digits.py']

model = dict(
    algorithm=dict(
        _delete_=True,
        type='BarlowTwins',
        backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BN'),
                      zero_init_residual=True),
        neck=dict(type='NonLinearNeck', in_channels=512, hid_channels=1024, out_channels=1024,
                  num_layers=3, with_last_bn=False, with_last_bn_affine=False,
                  with_avg_pool=True, norm_cfg=dict(type='BN1d')),
        head=dict(type='LatentCrossCorrelationHead', in_channels=1024,
                  loss=dict(type='CrossCorrelationLoss'))),
    comp_mod=dict(in_channels=512, out_channels=1024),
    # lambda1, lambda2: MCR's terms carry a real share of the gradient at these (measured on
    # the digits batch, tools/analysis/mcr_gradient_shares.py: 11% / 10% of L_ssl's gradient
    # on the embeddings; logged at the first iteration of every run). The paper's Table 6
    # (0.01, 0.1) belongs to its unstated mu: here it leaves the terms at 0.2-0.5%.
    lambda1=250.0,
    lambda2=0.4)
