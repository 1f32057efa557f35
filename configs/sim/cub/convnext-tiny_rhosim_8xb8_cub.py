# ConvNeXt-T on CUB with rhoSIM (rho=0.2, lambda=5e-3) on every ConvNeXt block
# (3+3+9+3 = 18; the downsampling layers between stages are not blocks and are not
# tapped). Everything else is the baseline's.
_base_ = ['./convnext-tiny_8xb8_cub.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 224, 224),  # reads the widths only
    regularizers=dict(
        sim=dict(type='RhoSIM', layers='backbone.stages.*.*', rho=0.2, loss_weight=5e-3)))
