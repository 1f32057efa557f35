# Swin-B on CUB with rhoSIM (rho=0.2, lambda=5e-3) on every Swin block (2+2+18+2 = 24;
# tokens (N, L, C); the patch-merging layers between stages are not tapped). Everything
# else is the baseline's.
_base_ = ['./swin-base_8xb8_cub-384px.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    # window attention at window 12 needs the size the config is built for
    probe_input=(1, 3, 384, 384),
    regularizers=dict(
        sim=dict(type='RhoSIM', layers='backbone.stages.*.blocks.*', rho=0.2,
                 loss_weight=5e-3)))
