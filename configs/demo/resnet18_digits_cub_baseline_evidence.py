# The baseline demo plus the evidence tools: gradient norms in the training log
# (GradNormHook) and neural-collapse / rank / regularizer diagnostics in every val
# (LayerFeatureHook captures the layers, FeatureCollapseMetric reports them).
# Twin: resnet18_digits_cub_rhosim_vcreg_evidence.py. Plots and table:
# tools/analysis/plot_curves.py and tools/analysis/metrics_table.py.
_base_ = ['./resnet18_digits_cub_baseline.py']

custom_hooks = [
    dict(type='GradNormHook'),
    dict(type='LayerFeatureHook',
         layers=['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4',
                 'neck'],
         vcreg_layers='backbone.layer*.*'),
]
val_evaluator = [dict(type='Accuracy', topk=(1, )), dict(type='FeatureCollapseMetric')]
test_evaluator = val_evaluator
default_hooks = dict(logger=dict(interval=1))  # every iteration in scalars.json
