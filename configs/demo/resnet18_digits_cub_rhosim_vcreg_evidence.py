# The demo (rhoSIM + VCReg on every residual block) plus the evidence tools, as in its
# twin resnet18_digits_cub_baseline_evidence.py; LayerFeatureHook also reports each
# rhoSIM block's reconstruction error on the val set.
_base_ = ['./resnet18_digits_cub_rhosim_vcreg.py']

custom_hooks = [
    dict(type='RegularizerHook'),  # logs VCReg's gradient share once (after iteration 1)
    dict(type='GradNormHook'),
    dict(type='LayerFeatureHook',
         layers=['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4',
                 'neck'],
         vcreg_layers='backbone.layer*.*'),
]
val_evaluator = [dict(type='Accuracy', topk=(1, )), dict(type='FeatureCollapseMetric')]
test_evaluator = val_evaluator
default_hooks = dict(logger=dict(interval=1))  # every iteration in scalars.json
