# ResNet-50 on CUB with rhoSIM on every residual block (16 bottlenecks; the strided first
# block of each stage is handled by resampling its input onto its output grid), the SIM
# paper's setting: rho=0.2, lambda=5e-3. Everything else is the baseline's.
_base_ = ['./resnet50_8xb8_cub.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    # the probe only reads the blocks' widths: 224 px is enough (and cheaper than 448)
    probe_input=(1, 3, 224, 224),
    regularizers=dict(
        sim=dict(type='RhoSIM', layers='backbone.layer*.*', rho=0.2, loss_weight=5e-3)))
