# MCR on SimCLR with a ResNet-18 on the digits folder at 32 px (CPU-sized); the baseline
# is simclr_r18_digits.py. lambda1, lambda2: the paper's Table 6 best (0.01, 0.1).
_base_ = ['./simclr_r18_digits.py']

# several processes (dist_train.sh, slurm): MCR averages its bi-level gradients itself
model_wrapper_cfg = dict(type='MCRDataParallel')

model = dict(
    _delete_=True,
    type='MCR',
    algorithm={{_base_.model}},
    comp_mod=dict(in_channels=512, out_channels=128, fusion='concat'),
    lambda1=0.01,
    lambda2=0.1,
    mec_scale='mec_code',      # MEC's training scale; 'paper': mu = (m + d) / 2
    meta_grad='second_order',  # or 'finite_difference', 'first_order'
    lam_warmup_epochs=1)       # MEC: 1/lambda from 8x over the first epochs

# Two optimizers (MMEngine's OptimWrapperDict): 'base' = the algorithm (theta, phi),
# 'meta' = CompMod (xi). Schedulers are keyed the same way.
optim_wrapper = dict(
    _delete_=True,
    constructor='MCROptimWrapperConstructor',
    base={{_base_.optim_wrapper}},
    meta=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3)))
param_scheduler = dict(_delete_=True, base={{_base_.param_scheduler}}, meta=[])
