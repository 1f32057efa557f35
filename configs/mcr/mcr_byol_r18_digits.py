# MCR on BYOL with a ResNet-18 on the digits folder at 32 px (CPU-sized): the SimCLR
# digits recipe with BYOL as the wrapped algorithm (mmpretrain's BYOL, unchanged).
_base_ = ['./mcr_simclr_r18_digits.py']

model = dict(
    algorithm=dict(
        _delete_=True,
        type='BYOL',
        base_momentum=0.01,
        backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BN')),
        # projector: the paper's 3-layer MLP; the predictor keeps BYOL's 2 layers
        neck=dict(type='NonLinearNeck', in_channels=512, hid_channels=1024, out_channels=128,
                  num_layers=3, with_bias=True, with_last_bn=False, with_avg_pool=True,
                  norm_cfg=dict(type='BN1d')),
        head=dict(type='LatentPredictHead', loss=dict(type='CosineSimilarityLoss'),
                  predictor=dict(type='NonLinearNeck', in_channels=128, hid_channels=1024,
                                 out_channels=128, num_layers=2, with_bias=True,
                                 with_last_bn=False, with_avg_pool=False,
                                 norm_cfg=dict(type='BN1d')))),
    comp_mod=dict(in_channels=512, out_channels=128),
    # lambda1, lambda2: MCR's terms carry a real share of the gradient at these (measured on
    # the digits batch, tools/analysis/mcr_gradient_shares.py: 10% / 10% of L_ssl's gradient
    # on the embeddings; logged at the first iteration of every run). The paper's Table 6
    # (0.01, 0.1) belongs to its unstated mu: here it leaves the terms at 0.2-0.5%.
    lambda1=0.2,
    lambda2=0.2)
