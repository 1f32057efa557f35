# MCR on BYOL, ResNet-50, ImageNet-1k: mmpretrain's stock BYOL recipe
# (mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py)
# with the algorithm wrapped by MCR, lambda1 = 0.01, lambda2 = 0.1 (the paper's Table 6
# best). This is the stock recipe at one GPU x 256 (MCR also runs
# on several with MCRDataParallel: scale lr with the total batch, auto_scale_lr) with the LARS learning rate scaled linearly
# (0.3 = stock lr x 256 / stock total batch).
# virtual_lr: LARS steps by lr x trust ratio, not lr x grad, so the virtual step takes an
# explicit plain-SGD learning rate; 0.05 is our choice, not the paper's (unverified).
_base_ = 'mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py'
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)
# several processes (dist_train.sh, slurm): MCR averages its bi-level gradients itself
model_wrapper_cfg = dict(type='MCRDataParallel')

model = dict(
    _delete_=True,
    type='MCR',
    algorithm={{_base_.model}},
    comp_mod=dict(in_channels=2048, out_channels=256, fusion='concat'),
    lambda1=0.01,
    lambda2=0.1,
    mec_scale='mec_code',      # MEC's training scale; 'paper': mu = (m + d) / 2
    meta_grad='second_order',  # 'finite_difference' needs no second-order graph
    virtual_lr=0.05,
    lam_warmup_epochs=10)

optim_wrapper = dict(
    _delete_=True,
    constructor='MCROptimWrapperConstructor',
    base=dict(
        type='OptimWrapper',
        optimizer=dict(type='LARS', lr=0.3, momentum=0.9, weight_decay=1e-6),
        paramwise_cfg=dict(custom_keys={
            'bn': dict(decay_mult=0, lars_exclude=True),
            'bias': dict(decay_mult=0, lars_exclude=True),
            'downsample.1': dict(decay_mult=0, lars_exclude=True)})),
    meta=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3)))
param_scheduler = dict(_delete_=True, base={{_base_.param_scheduler}}, meta=[])
train_dataloader = dict(batch_size=256)
auto_scale_lr = dict(base_batch_size=256)
