# The schedule of the VCReg paper's small-image families (long tail, App. C.4; hierarchical,
# App. C.3): AdamW (decoupled weight decay 0.05, norm layers excluded), 10 epochs of linear
# warm-up per iteration, then cosine to 0 per iteration, 100 epochs, batch 256 on one GPU.
# lr 0.016 here; the long-tail CIFAR-100 file sets 0.008.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.016, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    # no T_max / end: the cosine ends at train_cfg.max_epochs
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=10,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=5)
val_cfg = dict()
test_cfg = dict()
# batch 256 on one GPU; --auto-scale-lr scales the lr linearly with another total batch
auto_scale_lr = dict(base_batch_size=256)
